"""A TCP relay the harness owns, on loopback, between a sync's two ends: cutting it is a network cut that touches
nothing else (no firewall rule, no server setting).

While cut, the relay is a black hole, as a pulled cable is: open connections stay open but nothing passes, and a
new connection is accepted and then hears nothing (the client's own timeouts must notice).  Healing drops the
connections that lived through the cut (their peers would have given up on them) and lets new ones through.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time

from clauseproof.core.errors import ClauseproofError

POLL_S = 0.05


class Relay:
    """Forwards every connection on a free loopback port to ``host:port``."""

    def __init__(self, host: str, port: int, label: str) -> None:
        self.host, self.upstream_port, self.label = host, port, label
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(POLL_S * 4)
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket | None]] = []
        self._cut = threading.Event()
        self._stop = threading.Event()
        self.cut_at: float | None = None
        self.cuts = 0
        self._thread = threading.Thread(target=self._serve, name=f"relay-{label}", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def is_cut(self) -> bool:
        return self._cut.is_set()

    def cut(self) -> None:
        self.cut_at = time.monotonic()
        self.cuts += 1
        self._cut.set()

    def heal(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            for s in (a, b):
                if s is not None:
                    _reset(s)
        self._cut.clear()
        self.cut_at = None

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.heal()
        self._thread.join(5)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._cut.is_set():  # accepted, then silence
                with self._lock:
                    self._pairs.append((client, None))
                continue
            try:
                upstream = socket.create_connection((self.host, self.upstream_port), timeout=5)
            except OSError:
                _reset(client)  # nothing listens upstream (the server is down): refuse, as the server would
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peer = {a: b, b: a}
        try:
            while not self._stop.is_set():
                if self._cut.is_set():
                    time.sleep(POLL_S)
                    continue
                ready, _, _ = select.select([a, b], [], [], POLL_S)
                for s in ready:
                    if self._cut.is_set():
                        break
                    data = s.recv(65536)
                    if not data:
                        raise OSError("closed")
                    peer[s].sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            with self._lock:
                self._pairs = [p for p in self._pairs if p != (a, b)]
            for s in (a, b):
                _reset(s)


def _reset(s: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0): the peer learns at once that the connection is gone."""
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        s.close()


def open_relay(host: str, port: int, label: str) -> Relay:
    try:
        return Relay(host, port, label)
    except OSError as exc:
        raise ClauseproofError(f"could not open a loopback relay for {label}: {exc}") from None
