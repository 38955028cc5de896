"""PyMySQL connections that do not read the system's CA store for each one.

PyMySQL 1.2 connects in TLS "preferred" mode when no TLS option is given: it builds an :mod:`ssl` context for every
connection, and building it loads the system's certificate store (about 18 ms of CPU here) — for a context that
verifies nothing (``CERT_NONE``, no host check) and, when the server offers no TLS, is never used.  On a 2-core
machine that was most of the client CPU of the failover readers, which connect for every read (0.69 cores of the
Galera case), and 18 ms inside every SQL probe's measured latency.

:func:`connect` is ``pymysql.connect`` with that one context built once per process and shared (an
:class:`ssl.SSLContext` may serve many connections, from any thread).  The behaviour is PyMySQL's own: TLS when the
server offers it, unverified, plaintext when it does not; any TLS option given (``ssl``, ``ssl_ca``,
``ssl_disabled``, ...) is passed through unchanged and builds its own context as before.
"""

from __future__ import annotations

import threading
from typing import Any

import pymysql.connections

_lock = threading.Lock()
_preferred: Any = None


class Connection(pymysql.connections.Connection):
    """PyMySQL's connection, with the "preferred" mode's context shared."""

    def _create_ssl_ctx(self, sslp: Any) -> Any:
        global _preferred
        if not (isinstance(sslp, dict) and not sslp):  # options were given: PyMySQL's own context for them
            return super()._create_ssl_ctx(sslp)
        with _lock:
            if _preferred is None:
                _preferred = super()._create_ssl_ctx({})
            return _preferred


def connect(**kwargs: Any) -> Any:
    """``pymysql.connect(**kwargs)``, without the per-connection CA-store read (see the module)."""
    return Connection(**kwargs)
