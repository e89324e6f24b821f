"""The gateway's front: nginx, configured from the gateway's own settings, between clients and gunicorn.

gunicorn's threaded worker reads a started request with no deadline, so a client that sends one byte and then
nothing holds one of its threads for as long as it likes; gunicorn's documentation says such a server must sit
behind a buffering proxy. nginx is that proxy: it reads every request header and body itself, event-driven and
with deadlines, and hands gunicorn only whole requests, over a unix socket. On the way it caps connections and
requests per client (a token bucket shared by its workers), gives every request its id, answers its own
refusals in the platform's JSON error shape, and relays answers as they arrive (the whole list streams through).

Reads of the catalog (GET and HEAD under /api/movies) go from nginx straight to the inventory, over kept-alive
connections: they need nothing of the application (no key, no body, no broker), and a second Python server on
the path of every read cost as much CPU as the inventory itself (bench/README.md, "the read path"). Everything
else, writes included, goes to the application, which checks keys and proxies them as before. nginx logs each
read on a line of its own, which front.py turns into the gateway's access line and metrics, so that an operator
sees every request the gateway answered in one place, whichever process carried it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

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
    # A path of nginx's own (its internal locations) asked for by name.
    404: ("not_found", "no resource at this path"),
    # A transfer coding other than chunked (Transfer-Encoding: gzip), and a request line's HTTP/2.0.
    501: ("not_implemented", "this transfer coding is not supported: send the body as it is or chunked"),
    505: ("http_version_not_supported", "this HTTP version is not supported: HTTP/1.0 and HTTP/1.1 are"),
    500: ("internal_error", "the front of the gateway failed"),
    # The application failed after taking the request (killed in the middle): whether it was done is not known,
    # so the client is told to send it again (an order with its Idempotency-Key, which makes a copy harmless).
    502: ("service_unavailable", "the gateway application failed while answering: send the request again "
          "(an order with the same Idempotency-Key)"),
    504: ("gateway_timeout", "the gateway application did not answer in time"),
}
_ANSWERED_AS = {494: 431, 502: 503}
# On the read path nginx's 502 and 504 are the inventory's failures, worded as the application words them.
_INVENTORY_REFUSALS = {
    502: ("bad_gateway", "the inventory is unreachable or closed the connection"),
    504: ("gateway_timeout", "the inventory did not answer in time"),
}
# A read's log line, as nginx writes it (READ_LINE_FORMAT) and front.py reads it back (_READ_LINE): marked, so
# that it is never taken for one of nginx's other lines; the upstream's statuses (one per try: "502, 200") and
# then the request target, read to the end of the line, last. The target (and a refusal's request line) is cut
# to LOGGED_BYTES ("..." marks a cut one): escaped as JSON it is at most twice as long (\" and \\), so that
# every line fits in one atomic write to the pipe (PIPE_BUF, 4096 bytes), which two nginx workers share.
READ_LINE_MARK = "front-read"
LOGGED_BYTES = 1024
READ_LINE_FORMAT = (f"{READ_LINE_MARK} $status $request_time $request_method request_id=$req_id "
                    "client=$remote_addr upstream_status=$upstream_status target=$logged_target")

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
    # A Connection header that says only whether the connection stays open. One that names headers of its own
    # (hop-by-hop ones, which nginx cannot drop by name as they come) sends a read the application's way.
    map $http_connection $plain_connection {{
        "" 1;
        "~*^(keep-alive|close)$" 1;
        default 0;
    }}
    # A read of the catalog, classified on the request target as the client wrote it. One written otherwise
    # (%6F for an o), or with a Connection header that is not plain, is not missed: it takes the application's
    # path, which proxies it the same. (A method is letters only, so the key's colons are its own.)
    map "$plain_connection:$request_method:$request_uri" $inventory_read {{
        "~^1:(GET|HEAD):/api/movies(/|[?]|$)" 1;
        default 0;
    }}
    map $request_uri $logged_target {{
        "~^(?<logged_target_head>.{{{logged_bytes}}})." "${{logged_target_head}}...";
        default $request_uri;
    }}
    map $request $logged_request {{
        "~^(?<logged_request_head>.{{{logged_bytes}}})." "${{logged_request_head}}...";
        default $request;
    }}
    # Logged here: what nginx answered itself, and every read (the application logs what it served).
    map "$inventory_read:$upstream_status" $answered_by_front {{
        "0:" 1;
        default 0;
    }}
    # The request line as the client sent it: nginx answers a refusal by redirecting the request to its error
    # location as a GET, and $request_method would say GET of a refused POST.
    log_format refusals escape=json '$time_iso8601 front "$logged_request" $status request_id=$req_id client=$remote_addr';
    log_format reads escape=json '{read_line_format}';
    access_log /dev/stdout refusals if=$answered_by_front;
    # Written in batches, as the services' own lines are: one write per read would cost front.py a wake-up each.
    # (The buffer is the file's, so the refusals' lines wait in it too.) No larger than a pipe's atomic write
    # (PIPE_BUF, 4096 bytes): the two workers' batches must not interleave in the pipe.
    access_log /dev/stdout reads buffer=4k flush=200ms if=$inventory_read;

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

    upstream inventory_reads {{
        # The same address three times: a read whose connection failed (refused, reset, closed before its
        # answer's header) is sent again, at most three tries in all, as the application's client does for a
        # request the inventory cannot act on twice (app/inventory_client.py); nginx's round robin never picks
        # one entry twice for a request. Never marked down, so every read tries it.
        server {inventory_address} max_fails=0;
        server {inventory_address} max_fails=0;
        server {inventory_address} max_fails=0;
        # Idle connections kept per nginx worker; the inventory keeps them longer (75 s) than nginx (60 s), so
        # nginx is the one that closes an idle one.
        keepalive 32;
    }}

    server {{
        listen {listen} backlog=4096{proxy_protocol};
        # /api/movies and //api/movies are two paths, as they are to the application.
        merge_slashes off;
{real_ip}
        limit_conn per_client_connections {max_connections};
        limit_conn_status 429;
        limit_req zone=per_client_requests burst={burst} nodelay;
        limit_req_status 429;
{error_pages}
        location / {{
            # `rewrite ... last` is one of the two things nginx's documentation calls safe inside `if`.
            if ($inventory_read) {{
                rewrite ^ /.inventory-read last;
            }}
            proxy_pass http://gateway_application;
            proxy_http_version 1.1;
            # A connection per request: a kept-alive upstream connection that gunicorn closes as it restarts
            # would fail a request already sent. HTTP/1.1 all the same, so that a streamed answer is chunked
            # and one cut off in the middle cannot pass for complete.
            proxy_set_header Connection close;
            # The client's own Connection header, which names the headers that end at the gateway (app/proxy.py
            # drops them); set here whatever the client sent under this name.
            proxy_set_header X-Front-Connection $http_connection;
            proxy_set_header Host $http_host;
            proxy_set_header X-Request-ID $req_id;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            # The answer streams through as it arrives; the request is read whole first (the default).
            proxy_buffering off;
            proxy_read_timeout 60s;
            proxy_next_upstream error timeout;
        }}
        location = /.inventory-read {{
            internal;
{inventory_error_pages}
            # The target as the client wrote it: decoding it and encoding it again could change it.
            proxy_pass {inventory_scheme}://inventory_reads{inventory_base_path}$request_uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host {inventory_host};
            proxy_set_header X-Request-ID $req_id;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            # Hop-by-hop headers end here (RFC 9110 7.6.1), and so does the gateway's key.
            proxy_set_header Keep-Alive "";
            proxy_set_header TE "";
            proxy_set_header Upgrade "";
            proxy_set_header Proxy-Connection "";
            proxy_set_header Proxy-Authorization "";
            proxy_set_header Trailer "";
            proxy_set_header X-Api-Key "";
{authorization}
            # The inventory answers with the X-Request-ID it was given (or, refusing a request its HTTP server
            # cannot take, with the id of its own error body), so its header goes back as it is.
            proxy_buffering off;
            proxy_connect_timeout {inventory_connect_timeout};
            proxy_read_timeout {inventory_read_timeout};
            # Again on a failed connection (a kept-alive one the inventory closed meanwhile included); a read that
            # timed out is not sent twice.
            proxy_next_upstream error;
            proxy_next_upstream_tries 3;
{tls}
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


# The system's trusted certificates (Debian's ca-certificates), for an https INVENTORY_URL.
_CA_CERTIFICATES = "/etc/ssl/certs/ca-certificates.crt"

_READ_LINE = re.compile(
    rf"{READ_LINE_MARK} (?P<status>\d{{3}}) (?P<seconds>\d+\.\d+) (?P<method>\S+) request_id=(?P<request_id>\S*) "
    r"client=\S* upstream_status=(?P<upstream_status>.*?) target=(?P<target>.*)"
)


@dataclass(frozen=True)
class ReadLine:
    """A read nginx carried to the inventory, as its log line tells it."""

    status: int
    seconds: float
    method: str
    request_id: str
    upstream_status: str
    target: str

    @property
    def upstream_failure(self) -> str | None:
        """The kind of inventory failure it was answered with, in the application's words (app/metrics.py):
        nginx's 502 is a connection refused, reset or answered with garbage, its 504 no answer in time."""
        if not self.upstream_status or self.upstream_status == "-":
            return None  # refused by nginx before any try (a rate limit, a bad request)
        return {502: "unreachable", 504: "timeout"}.get(self.status)


def parse_read_line(line: str) -> ReadLine | None:
    """A read's log line (READ_LINE_FORMAT), or None for any other line of nginx."""
    match = _READ_LINE.fullmatch(line)
    if match is None:
        return None
    # nginx wrote the target as a JSON string's content (escape=json: \" and \\ and \u00XX).
    try:
        target = json.loads(f'"{match["target"]}"')
    except ValueError:
        target = match["target"]
    return ReadLine(int(match["status"]), float(match["seconds"]), match["method"], match["request_id"],
                    match["upstream_status"], target)


def render(config: Config, listen: str | None = None) -> str:
    """nginx's configuration for the front; it listens on the gateway's host and port, or on `listen` (an address
    as nginx's `listen` takes it)."""
    gateway = config.gateway
    runtime = front_dir(config)
    # An internal URI, not a named location: a refusal of the request line itself has no URI to redirect from.
    # Each location returns the status it answers (`=` alone keeps it: a TRACE on an unknown path is a 404).
    error_pages = "\n".join(f"        error_page {status} = /.refused/{status};" for status in _REFUSALS)
    # A location with error pages of its own inherits none of the server's: the read path names them all.
    inventory_error_pages = "\n".join(
        f"            error_page {status} = /.refused/{'inventory-' if status in _INVENTORY_REFUSALS else ''}{status};"
        for status in _REFUSALS)
    # (location name, the status nginx refers to it with, the status it answers, the error's code and message)
    refusals = [(str(status), status, _ANSWERED_AS.get(status, status), code, message)
                for status, (code, message) in _REFUSALS.items()]
    refusals += [(f"inventory-{status}", status, status, code, message)
                 for status, (code, message) in _INVENTORY_REFUSALS.items()]
    locations = []
    for name, status, answered, code, message in refusals:
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
            f"        location = /.refused/{name} {{\n"
            f"            internal;\n"
            f"            add_header X-Request-ID $req_id always;\n{extra}"
            f"            return {answered} '{_error_body(code, text)}';\n"
            f"        }}"
        )
    # Only the balancer on this machine may say where a connection comes from.
    real_ip = ("        set_real_ip_from 127.0.0.1;\n        real_ip_header proxy_protocol;"
               if gateway.behind_proxy_protocol else "")
    inventory = urlsplit(config.inventory.url)
    default_port = 443 if inventory.scheme == "https" else 80
    return _TEMPLATE.format(
        inventory_address=f"{_host_literal(inventory.hostname or '')}:{inventory.port or default_port}",
        inventory_scheme=inventory.scheme, inventory_base_path=inventory.path.rstrip("/"),
        inventory_host=inventory.netloc,
        inventory_connect_timeout=_milliseconds(gateway.inventory_connect_timeout_s),
        inventory_read_timeout=_milliseconds(gateway.inventory_read_timeout_s),
        inventory_error_pages=inventory_error_pages, read_line_format=READ_LINE_FORMAT,
        logged_bytes=LOGGED_BYTES,
        # An https inventory is checked as the application's client checks it: its certificate and its name.
        tls=(f"            proxy_ssl_server_name on;\n            proxy_ssl_name {inventory.hostname};\n"
             f"            proxy_ssl_verify on;\n            proxy_ssl_trusted_certificate {_CA_CERTIFICATES};"
             if inventory.scheme == "https" else ""),
        # The key is the gateway's: an Authorization that may carry one does not travel further.
        authorization='            proxy_set_header Authorization "";' if gateway.api_keys else "",
        proxy_protocol=" proxy_protocol" if gateway.behind_proxy_protocol else "", real_ip=real_ip,
        runtime=runtime, listen=listen or f"{_host_literal(gateway.host)}:{gateway.port}",
        app_socket=gateway.app_socket,
        header_timeout=gateway.client_header_timeout_s, body_timeout=gateway.client_body_timeout_s,
        max_body=gateway.max_body_bytes, field_bytes=MAX_HEADER_FIELD_BYTES,
        max_connections=gateway.max_connections_per_client, rate=gateway.rate_limit_per_s,
        burst=gateway.rate_limit_burst, error_pages=error_pages, error_locations="\n".join(locations),
        allowed_methods="\n".join(f'        "~{pattern}" "{methods}";' for pattern, methods in ALLOWED_METHODS),
    )


def _host_literal(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _milliseconds(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def _error_body(code: str, message: str) -> str:
    return f'{{"error":"{code}","message":"{message}","request_id":"$req_id"}}\\n'


def front_dir(config: Config) -> Path:
    """The front's own runtime directory: its configuration, pid file and temporary files."""
    return config.gateway.runtime_dir / f"front-{config.gateway.port}"
