"""A TCP forwarder on loopback: several endpoints in front of one server (a cheat the self-tests hold)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    for s in (src, dst):
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def forwarder(host: str, port: int) -> Iterator[int]:
    """Listen on a free loopback port and forward every connection to ``host:port``; yields the port.
    Everything is closed when the block ends."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    sockets: list[socket.socket] = [listener]

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection((host, port), timeout=5)
            upstream.settimeout(None)
            sockets.extend((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=2)
        for s in sockets:
            with contextlib.suppress(OSError):
                s.close()
