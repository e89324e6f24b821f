"""The gunicorn worker of this service: gthread, with a stop that drops nothing and errors in JSON.

Identical in srcs/api-gateway and srcs/inventory-app (the services share no code).
"""

from __future__ import annotations

import json
import uuid
from http import HTTPStatus

import gunicorn.util
from gunicorn.workers.gthread import TConn, ThreadWorker

# The platform's error codes for the statuses gunicorn itself answers (requests it cannot parse).
_ERROR_CODES = {
    400: "bad_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "request_header_fields_too_large",
    500: "internal_error",
    501: "not_implemented",
}


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn.util.write_error, but the body is the platform's JSON error shape instead of an HTML page."""
    request_id = uuid.uuid4().hex
    body = json.dumps(
        {
            "error": _ERROR_CODES.get(status_int, "bad_request"),
            "message": mesg or reason or HTTPStatus(status_int).phrase,
            "request_id": request_id,
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"X-Request-ID: {request_id}\r\n\r\n"
    ).encode("latin-1")
    gunicorn.util.write_nonblock(sock, head + body)


class DrainingThreadWorker(ThreadWorker):
    """gunicorn's gthread worker, with two changes.

    A graceful stop serves every connection the kernel already queued. gthread stops accepting on SIGTERM yet
    keeps its listening socket open until its last request is done; the connections that queue meanwhile are
    reset when it finally closes, so under load a `pm2 restart` would cut off requests clients had already
    sent. This worker takes the queue and closes the socket at once instead: a client is either served, or
    refused before sending anything (and may safely retry).

    A request gunicorn cannot parse (a request line over the limit, oversized headers, a bad chunk) is answered
    in the platform's JSON error shape, not with gunicorn's HTML page.
    """

    @classmethod
    def setup(cls) -> None:
        # gunicorn calls a worker class's setup() once, in the master, before forking; handle_error() writes
        # its answer through gunicorn.util.write_error, which has no other hook.
        gunicorn.util.write_error = write_json_error

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            self._serve_queued_then_stop_listening()

    def _serve_queued_then_stop_listening(self) -> None:
        for listener in self.sockets:
            listener.setblocking(False)
            while True:
                try:
                    client, address = listener.accept()
                except OSError:  # EAGAIN: the queue is empty
                    break
                self.nr_conns += 1
                client.setblocking(True)
                self.enqueue_req(TConn(self.cfg, client, address, listener.getsockname()))
            # The master closed its copy before signalling: the last worker to get here closes the socket.
            listener.close()
