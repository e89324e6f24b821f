"""Tiny misbehaving inventories on loopback: one that never answers in time, one that resets connections."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable


class FakeUpstream:
    """Accepts connections on a free loopback port and hands each to `behaviour` in its own thread."""

    def __init__(self, behaviour: Callable[[socket.socket], None]) -> None:
        self._behaviour = behaviour
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._stopped = threading.Event()
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> FakeUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def _handle(self, connection: socket.socket) -> None:
        with connection:
            try:
                self._behaviour(connection)
            except OSError:
                pass


def slow(seconds: float) -> Callable[[socket.socket], None]:
    """Reads the request, then stays silent for `seconds` before a valid answer."""

    def behaviour(connection: socket.socket) -> None:
        connection.recv(65536)
        time.sleep(seconds)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]")

    return behaviour


def reset(connection: socket.socket) -> None:
    """Reads the request, then resets the connection (SO_LINGER 0: RST instead of FIN)."""
    connection.recv(65536)
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def garbage(connection: socket.socket) -> None:
    connection.recv(65536)
    connection.sendall(b"this is not HTTP\r\n\r\n")


def reset_first_connection() -> Callable[[socket.socket], None]:
    """Resets the first connection after reading its request (as a restarting inventory does to a pooled
    connection); answers every later one with a movie."""
    seen = []

    def behaviour(connection: socket.socket) -> None:
        seen.append(connection)
        if len(seen) == 1:
            reset(connection)
            return
        connection.recv(65536)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")

    return behaviour


class Recorder:
    """A keep-alive HTTP/1.1 server that records every request's head and answers 200, with hop-by-hop
    headers of its own that must not reach the client."""

    def __init__(self) -> None:
        self.requests: list[str] = []

    def __call__(self, connection: socket.socket) -> None:
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            self.requests.append(head.decode("latin-1"))
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
                b"Keep-Alive: timeout=75\r\nConnection: keep-alive, X-Upstream-Hop\r\nX-Upstream-Hop: 1\r\n"
                b"X-End-To-End: kept\r\n\r\n[]"
            )
