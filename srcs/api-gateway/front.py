"""Entry point of the gateway's front: read the gateway's settings once, write nginx's configuration from them,
check it, and become nginx (in the foreground, so that PM2 supervises the nginx master itself).

PM2 stops it with SIGQUIT (config.yaml): nginx's graceful stop, which closes its listening socket at once and
finishes the requests in flight.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys

from crud_common.logs import configure_logging
from crud_common.settings import load_or_exit

from app.config import Config
from app.front import front_dir, render

log = logging.getLogger("gateway.front")


def main() -> None:
    configure_logging()
    config = load_or_exit(Config, "gateway")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    runtime = front_dir(config)
    runtime.mkdir(parents=True, exist_ok=True)
    conf = runtime / "nginx.conf"
    conf.write_text(render(config))
    checked = subprocess.run([nginx, "-t", "-q", "-c", str(conf), "-p", str(runtime)], capture_output=True,
                             text=True)
    if checked.returncode != 0:
        log.error("the front's nginx configuration (%s) is refused: %s", conf, checked.stderr.strip())
        logging.shutdown()
        sys.exit(2)
    log.info("front on %s:%s -> %s (nginx, %s)", config.gateway.host, config.gateway.port,
             config.gateway.app_socket, conf)
    logging.shutdown()
    os.execv(nginx, [nginx, "-c", str(conf), "-p", str(runtime)])


if __name__ == "__main__":
    main()
