"""The gateway's front: nginx, configured from the gateway's own settings, between clients and gunicorn.

gunicorn's threaded worker reads a started request with no deadline, so a client that sends one byte and then
nothing holds one of its threads for as long as it likes; gunicorn's documentation says such a server must sit
behind a buffering proxy. nginx is that proxy: it reads every request header and body itself, event-driven and
with deadlines, and hands gunicorn only whole requests, over a unix socket. On the way it caps connections and
requests per client (a token bucket shared by its workers), gives every request its id, answers its own
refusals in the platform's JSON error shape, and relays answers as they arrive (the whole list streams through).
"""

from __future__ import annotations

from pathlib import Path

from crud_common.serving import MAX_HEADER_FIELD_BYTES

from .config import Config

# nginx's own refusals, each answered by a named location in the platform's JSON error shape. 494 is nginx's
# "request header too large", a 400 on the wire, here the 431 it is; nginx's 502 is answered as a 503 (below).
_REFUSALS = {
    400: ("bad_request", "the request could not be parsed"),
    408: ("request_timeout", "the request was not sent in time"),
    413: ("payload_too_large", "the body is larger than the {max_body} bytes allowed"),
    414: ("uri_too_long", "the request line is too long"),
    429: ("too_many_requests", "too many requests or connections from this address: retry in a second"),
    494: ("request_header_fields_too_large", "the header fields of the request are too large"),
    405: ("method_not_allowed", "TRACE is not allowed on this path"),
    500: ("internal_error", "the front of the gateway failed"),
    # The application failed after taking the request (killed in the middle): whether it was done is not known,
    # so the client is told to send it again (an order with its Idempotency-Key, which makes a copy harmless).
    502: ("service_unavailable", "the gateway application failed while answering: send the request again "
          "(an order with the same Idempotency-Key)"),
    504: ("gateway_timeout", "the gateway application did not answer in time"),
}
_ANSWERED_AS = {494: 431, 502: 503}

# nginx refuses TRACE itself, before any location: its 405 says what the gateway allows on the path, as the
# gateway's own 405s do (tests/test_front.py compares the two on every route), and a path the gateway does not
# have is a 404. Matched on the request target as the client wrote it, as the gateway routes it.
ALLOWED_METHODS = (
    (r"^/api/movies/?(\?|$)", "GET, HEAD, POST, DELETE, OPTIONS"),
    (r"^/api/movies/", "GET, HEAD, PUT, DELETE, OPTIONS"),
    (r"^/api/billing/?(\?|$)", "OPTIONS, POST"),
    (r"^/(health|openapi\.yaml|docs/?|docs/[^/?]+)(\?|$)", "HEAD, GET, OPTIONS"),
)

_TEMPLATE = """# Written by srcs/api-gateway/front.py from the gateway's settings at each start: edit those, not this.
worker_processes 2;
pid {runtime}/nginx.pid;
error_log stderr warn;
daemon off;
# Within the 30 s PM2 waits (kill_timeout), as gunicorn's own graceful timeout is.
worker_shutdown_timeout 20s;

events {{
    worker_connections 4096;
}}

http {{
    server_tokens off;
    default_type application/json;
    client_body_temp_path {runtime}/body;
    proxy_temp_path {runtime}/proxy;
    fastcgi_temp_path {runtime}/fastcgi;
    uwsgi_temp_path {runtime}/uwsgi;
    scgi_temp_path {runtime}/scgi;

    # The request id: the client's when it is a plain token, else nginx's own (32 hex digits).
    map $http_x_request_id $req_id {{
        "~^[A-Za-z0-9._:-]{{1,128}}$" $http_x_request_id;
        default $request_id;
    }}
    map $request_uri $allowed_methods {{
{allowed_methods}
        default "";
    }}
    # Only what nginx answered itself is logged here (the gateway logs every request it served).
    map $upstream_status $answered_by_front {{
        "" 1;
        default 0;
    }}
    log_format refusals escape=json '$time_iso8601 front $request_method $request_uri $status request_id=$req_id client=$remote_addr';
    access_log /dev/stdout refusals if=$answered_by_front;

    client_header_timeout {header_timeout}s;
    client_body_timeout {body_timeout}s;
    send_timeout 30s;
    keepalive_timeout 15s;
    reset_timedout_connection on;
    client_max_body_size {max_body};
    client_body_buffer_size {max_body};
    # A request line or header field of up to {field_bytes} bytes, as the gateway's application takes.
    large_client_header_buffers 4 8k;

    limit_conn_zone $binary_remote_addr zone=per_client_connections:10m;
    limit_req_zone $binary_remote_addr zone=per_client_requests:10m rate={rate}r/s;

    upstream gateway_application {{
        # Never marked down: every request tries the application first. One refused there (gunicorn between
        # two processes during a restart) was never sent, so it goes to the backup, which says so: a 503.
        server unix:{app_socket} max_fails=0;
        server unix:{runtime}/restarting.sock backup;
    }}

    server {{
        listen {host}:{port} backlog=4096{proxy_protocol};
{real_ip}
        limit_conn per_client_connections {max_connections};
        limit_conn_status 429;
        limit_req zone=per_client_requests burst={burst} nodelay;
        limit_req_status 429;
{error_pages}
        location / {{
            proxy_pass http://gateway_application;
            proxy_http_version 1.1;
            # A connection per request: a kept-alive upstream connection that gunicorn closes as it restarts
            # would fail a request already sent. HTTP/1.1 all the same, so that a streamed answer is chunked
            # and one cut off in the middle cannot pass for complete.
            proxy_set_header Connection close;
            proxy_set_header Host $http_host;
            proxy_set_header X-Request-ID $req_id;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            # The answer streams through as it arrives; the request is read whole first (the default).
            proxy_buffering off;
            proxy_read_timeout 60s;
            proxy_next_upstream error timeout;
        }}
{error_locations}
    }}

    server {{
        listen unix:{runtime}/restarting.sock;
        location / {{
            add_header X-Request-ID $http_x_request_id always;
            add_header Retry-After 1 always;
            return 503 '{{"error":"service_unavailable","message":"the gateway is restarting: nothing was done, retry in a second","request_id":"$http_x_request_id"}}\\n';
        }}
    }}
}}
"""


def render(config: Config) -> str:
    gateway = config.gateway
    runtime = front_dir(config)
    # An internal URI, not a named location: a refusal of the request line itself has no URI to redirect from.
    # Each location returns the status it answers (`=` alone keeps it: a TRACE on an unknown path is a 404).
    error_pages = "\n".join(f"        error_page {status} = /.refused/{status};" for status in _REFUSALS)
    locations = []
    for status, (code, message) in _REFUSALS.items():
        text = message.format(max_body=gateway.max_body_bytes)
        extra = ""
        if status == 429:
            extra = "            add_header Retry-After 1 always;\n"
        if status == 405:
            extra = (
                '            if ($allowed_methods = "") {\n'
                "                add_header X-Request-ID $req_id always;\n"
                f"                return 404 '{_error_body('not_found', 'no resource at this path')}';\n"
                "            }\n"
                "            add_header Allow $allowed_methods always;\n"
            )
        locations.append(
            f"        location = /.refused/{status} {{\n"
            f"            internal;\n"
            f"            add_header X-Request-ID $req_id always;\n{extra}"
            f"            return {_ANSWERED_AS.get(status, status)} '{_error_body(code, text)}';\n"
            f"        }}"
        )
    # Only the balancer on this machine may say where a connection comes from.
    real_ip = ("        set_real_ip_from 127.0.0.1;\n        real_ip_header proxy_protocol;"
               if gateway.behind_proxy_protocol else "")
    return _TEMPLATE.format(
        proxy_protocol=" proxy_protocol" if gateway.behind_proxy_protocol else "", real_ip=real_ip,
        runtime=runtime, host=gateway.host, port=gateway.port, app_socket=gateway.app_socket,
        header_timeout=gateway.client_header_timeout_s, body_timeout=gateway.client_body_timeout_s,
        max_body=gateway.max_body_bytes, field_bytes=MAX_HEADER_FIELD_BYTES,
        max_connections=gateway.max_connections_per_client, rate=gateway.rate_limit_per_s,
        burst=gateway.rate_limit_burst, error_pages=error_pages, error_locations="\n".join(locations),
        allowed_methods="\n".join(f'        "~{pattern}" "{methods}";' for pattern, methods in ALLOWED_METHODS),
    )


def _error_body(code: str, message: str) -> str:
    return f'{{"error":"{code}","message":"{message}","request_id":"$req_id"}}\\n'


def front_dir(config: Config) -> Path:
    """The front's own runtime directory: its configuration, pid file and temporary files."""
    return config.gateway.runtime_dir / f"front-{config.gateway.port}"
