"""Entry point of the gateway's front: read the gateway's settings once, write nginx's configuration from them,
check it, then run nginx in the foreground and stay beside it.

nginx cannot open its access log on a socket, and PM2 gives its apps sockets for stdout; so nginx writes its
log lines into a pipe that this process relays to its own stdout. PM2 stops every app with the daemon's one
signal (SIGTERM, scripts/lib/pm2.sh), which is nginx's fast stop, dropping what is in flight: it reaches nginx
as SIGQUIT, its graceful stop (it closes its listening socket at once and finishes the requests in flight).
HUP (reload) and USR1 (reopen the log) pass on as they are. Should this process die without passing a signal
on, the kernel stops nginx too (PR_SET_PDEATHSIG), so that no orphan keeps the port.
"""

from __future__ import annotations

import ctypes
import logging
import shutil
import signal
import subprocess
import sys
from types import FrameType

from crud_common.logs import configure_logging
from crud_common.settings import load_or_exit

from app.config import Config
from app.front import front_dir, render

log = logging.getLogger("gateway.front")

_PASSED_ON = {
    signal.SIGTERM: signal.SIGQUIT,
    signal.SIGINT: signal.SIGQUIT,
    signal.SIGQUIT: signal.SIGQUIT,
    signal.SIGHUP: signal.SIGHUP,
    signal.SIGUSR1: signal.SIGUSR1,
}
_PR_SET_PDEATHSIG = 1


def _stop_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def main() -> None:
    configure_logging()
    config = load_or_exit(Config, "gateway")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    runtime = front_dir(config)
    runtime.mkdir(parents=True, exist_ok=True)
    conf = runtime / "nginx.conf"
    conf.write_text(render(config))
    command = [nginx, "-c", str(conf), "-p", str(runtime)]
    checked = subprocess.run([*command, "-t", "-q"], capture_output=True, text=True)
    if checked.returncode != 0:
        log.error("the front's nginx configuration (%s) is refused: %s", conf, checked.stderr.strip())
        sys.exit(2)
    log.info("front on %s:%s -> %s (nginx, %s)", config.gateway.host, config.gateway.port,
             config.gateway.app_socket, conf)

    master = subprocess.Popen(command, stdout=subprocess.PIPE, preexec_fn=_stop_with_parent)

    def pass_on(signum: int, _frame: FrameType | None) -> None:
        master.send_signal(_PASSED_ON[signal.Signals(signum)])

    for signum in _PASSED_ON:
        signal.signal(signum, pass_on)
    assert master.stdout is not None
    for line in master.stdout:
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
    code = master.wait()
    log.info("nginx stopped (exit status %s)", code)
    sys.exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
