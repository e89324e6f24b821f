"""Entry point of the gateway's front: read the gateway's settings once, write nginx's configuration from them,
check it, then run nginx in the foreground and stay beside it.

The listening socket is opened here and handed to nginx (nginx takes the sockets it inherits through the NGINX
environment variable, as in its own binary upgrade). A listening socket that closes resets every connection the
kernel has already accepted into its queue and nobody has taken yet, so a stop first makes the socket drop new
SYNs (a socket filter that lets handshakes already under way complete), waits for nginx to take what is queued,
and only then stops nginx: a client that
connects meanwhile retries its SYN a second later and finds the next front, or a refusal, never a reset.

nginx cannot open its access log on a socket, and PM2 gives its apps sockets for stdout; so nginx writes its
log lines into a pipe that this process relays to its own stdout. A read of the catalog, which nginx proxies to
the inventory itself (app/front.py), comes as a line of its own: this process counts it in the gateway's
metrics (in the directory of the application's gunicorn master, which adds them to its workers', so that one
endpoint shows them all) and writes it as the gateway's access line for it. PM2 stops every app with the daemon's one
signal (SIGTERM, scripts/lib/pm2.sh), which is nginx's fast stop, dropping what is in flight: it reaches nginx
as SIGQUIT, its graceful stop (it closes its listening socket at once and finishes the requests in flight).
HUP (reload) and USR1 (reopen the log) pass on as they are. Should this process die without passing a signal
on, the kernel stops nginx too (PR_SET_PDEATHSIG), so that no orphan keeps the port.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from types import FrameType
from urllib.parse import unquote

from crud_common.logs import configure_logging
from crud_common.metrics import count_in_files_as
from crud_common.settings import load_or_exit
from crud_common.webapp import log_access

from app.config import Config
from app.front import front_dir, parse_read_line, render
from app.metrics import GatewayMetrics
from app.proxy import route_of

log = logging.getLogger("gateway.front")
access_log = logging.getLogger("gateway.access")

_PASSED_ON = {
    signal.SIGTERM: signal.SIGQUIT,
    signal.SIGINT: signal.SIGQUIT,
    signal.SIGQUIT: signal.SIGQUIT,
    signal.SIGHUP: signal.SIGHUP,
    signal.SIGUSR1: signal.SIGUSR1,
}
_STOPS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT}
_PR_SET_PDEATHSIG = 1
_SO_ATTACH_FILTER = 26
# A classic BPF program, run on each TCP segment that reaches the listening socket (the data starts at the TCP
# header): a SYN without ACK (a new connection) is dropped, anything else passes. The ACK that completes a
# handshake already under way must pass: dropped, it leaves the connection half open, and its client, which
# believes it connected and sends its request, is reset when the socket closes.
_DROP_NEW_CONNECTIONS = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *instruction) for instruction in (
    (0x30, 0, 0, 13),          # ldb [13]: the TCP flags
    (0x54, 0, 0, 0x12),        # and #(SYN | ACK)
    (0x15, 0, 1, 0x02),        # jeq #SYN: next, else skip one
    (0x06, 0, 0, 0),           # ret #0: dropped
    (0x06, 0, 0, 0xFFFFFFFF),  # ret #-1: kept whole
)))
_DROP_NEW_CONNECTIONS_LENGTH = 5
# Once nothing is queued, how long to look again: a handshake whose last ACK was on its way is queued by then.
_SETTLE_S = 0.05
# TCP_INFO of a listening socket: tcpi_unacked (at this offset) is the number of connections waiting for accept().
_TCPI_UNACKED = 24
_BACKLOG = 4096


def _stop_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Listener:
    """The front's listening socket, shared with nginx, closed without resetting what it already accepted."""

    def __init__(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.create_server((host, port), family=family, backlog=_BACKLOG)
        # nginx takes an inherited socket as it is, and its workers all wake for one connection: on a blocking
        # socket, those that lose the race wait in accept() and serve nothing else, their signals included.
        self.socket.setblocking(False)
        self.socket.set_inheritable(True)

    def waiting(self) -> int:
        info = self.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        return struct.unpack_from("I", info, _TCPI_UNACKED)[0]

    def drain(self, timeout_s: float = 2.0) -> int:
        """New SYNs dropped, then wait until nginx took every queued connection, and the handshakes that were
        under way were queued and taken too; what is still queued."""
        program = struct.pack("HL", _DROP_NEW_CONNECTIONS_LENGTH, ctypes.addressof(_DROP_NEW_CONNECTIONS))
        self.socket.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, program)
        deadline = time.monotonic() + timeout_s
        empty_since = None
        while time.monotonic() < deadline:
            if self.waiting():
                empty_since = None
            elif empty_since is None:
                empty_since = time.monotonic()
            elif time.monotonic() - empty_since >= _SETTLE_S:
                break
            time.sleep(0.01)
        waiting = self.waiting()
        self.socket.close()
        return waiting


class ReadsRelay:
    """nginx's lines: a read's becomes its access line and is counted; any other is relayed as it came."""

    def __init__(self) -> None:
        # Made once the values' directory is chosen (count_in_files_as): the metrics live in its files.
        self.metrics = GatewayMetrics()

    def line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\n")
        read = parse_read_line(text)
        if read is None:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
            return
        # Routed on the decoded path, as the application routes PATH_INFO.
        path = unquote(read.target.split("?", 1)[0])
        try:
            self.metrics.observe(route_of(path), read.method, read.status, read.seconds)
            failure = read.upstream_failure
            if failure is not None:
                self.metrics.upstream_failures.labels(failure).inc()
        except Exception:  # noqa: BLE001 - a failure to count must not stop the relay, and with it nginx
            log.exception("a read could not be counted: %s", text)
        log_access(access_log, read.method, read.target, read.status, read.seconds, read.request_id,
                   {"upstream": "inventory", "via": "front", "upstream_status": read.upstream_status})


def main() -> None:
    configure_logging()
    config = load_or_exit(Config, "gateway")
    count_in_files_as(config.gateway.metrics_dir, "front")
    relay = ReadsRelay()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    runtime = front_dir(config)
    runtime.mkdir(parents=True, exist_ok=True)
    # A front that was killed (SIGKILL: no cleanup) left its backup socket behind: nginx would not bind it again.
    (runtime / "restarting.sock").unlink(missing_ok=True)
    conf = runtime / "nginx.conf"
    conf.write_text(render(config))
    command = [nginx, "-c", str(conf), "-p", str(runtime)]
    # `nginx -t` opens every socket it is given, the listening one included: a client that connects meanwhile
    # (the port is free while a front restarts) would be reset as the check exits. The check listens elsewhere.
    check = runtime / "nginx-check.conf"
    check.write_text(render(config, listen=f"unix:{runtime}/check.sock"))
    checked = subprocess.run([nginx, "-c", str(check), "-p", str(runtime), "-t", "-q"],
                             capture_output=True, text=True)
    if checked.returncode != 0:
        # nginx's message names the check's copy, whose lines are the configuration's.
        log.error("the front's nginx configuration (%s) is refused: %s", conf, checked.stderr.strip())
        sys.exit(2)
    log.info("front on %s:%s -> %s, reads of the catalog -> %s (nginx, %s)", config.gateway.host,
             config.gateway.port, config.gateway.app_socket, config.inventory.url, conf)

    listener = Listener(config.gateway.host, config.gateway.port)
    fd = listener.socket.fileno()
    master = subprocess.Popen(command, stdout=subprocess.PIPE, preexec_fn=_stop_with_parent, pass_fds=(fd,),
                              env={**os.environ, "NGINX": f"{fd};"})

    def pass_on(signum: int, _frame: FrameType | None) -> None:
        if signum in _STOPS and listener.socket.fileno() != -1:
            left = listener.drain()
            if left:
                log.warning("stopping with %d connections still queued: they are reset", left)
        master.send_signal(_PASSED_ON[signal.Signals(signum)])

    for signum in _PASSED_ON:
        signal.signal(signum, pass_on)
    assert master.stdout is not None
    for line in master.stdout:
        relay.line(line)
    code = master.wait()
    log.info("nginx stopped (exit status %s)", code)
    sys.exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
