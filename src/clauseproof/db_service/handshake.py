"""The MySQL wire protocol's first packet, read off a socket (no driver, no login): what the server says it is
before any SQL runs — protocol version, version string, capability flags, default authentication plugin.

A proxy or fork can rewrite ``@@version``; it rarely rewrites every bit of its greeting. MariaDB, for one, clears
capability bit 0 (``CLIENT_LONG_PASSWORD``, which MariaDB calls ``CLIENT_MYSQL``) and puts its own extended
capabilities in the reserved bytes, and offers ``mysql_native_password`` where MySQL 8 offers
``caching_sha2_password``.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field
from typing import Any

#: Capability bits (MySQL's protocol documentation, "Capabilities Flags").
CLIENT_LONG_PASSWORD = 1
CLIENT_PROTOCOL_41 = 0x200
CLIENT_SECURE_CONNECTION = 0x8000
CLIENT_PLUGIN_AUTH = 0x80000
CLIENT_SSL = 0x800

#: How long the greeting may take (the server sends it unasked, at once).
GREETING_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Greeting:
    protocol: int
    version: str
    capabilities: int
    auth_plugin: str
    mariadb_extended: int  # the reserved bytes' last four, MariaDB's extended capabilities (0 on MySQL)
    raw_length: int
    notes: list[str] = field(default_factory=list)

    def evidence(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "version": self.version,
            "capabilities": f"0x{self.capabilities:08x}",
            "client_long_password_bit": bool(self.capabilities & CLIENT_LONG_PASSWORD),
            "ssl_offered": bool(self.capabilities & CLIENT_SSL),
            "auth_plugin": self.auth_plugin,
            "mariadb_extended_capabilities": f"0x{self.mariadb_extended:08x}",
        }


class GreetingError(Exception):
    """The server's first packet could not be read or is not a MySQL protocol-10 greeting."""


def read_greeting(host: str, port: int, timeout: float = GREETING_TIMEOUT_S) -> Greeting:
    """Connect, read the first packet, close without logging in."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            head = _read_exact(s, 4)
            length = head[0] | head[1] << 8 | head[2] << 16
            if not 0 < length <= 1 << 16:
                raise GreetingError(f"the first packet announces {length} bytes: not a MySQL greeting")
            return parse_greeting(_read_exact(s, length))
    except OSError as exc:
        raise GreetingError(f"no greeting from {host}:{port}: {exc}") from None


def _read_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise GreetingError(f"the server closed the connection after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def parse_greeting(p: bytes) -> Greeting:
    """Parse a HandshakeV10 payload (raises :class:`GreetingError` naming what is wrong)."""
    if not p:
        raise GreetingError("empty first packet")
    if p[0] == 0xFF:
        code = struct.unpack_from("<H", p, 1)[0] if len(p) >= 3 else 0
        raise GreetingError(f"the server answered with error {code}: {p[3:].decode('utf-8', 'replace')[:200]}")
    if p[0] != 10:
        raise GreetingError(f"protocol version {p[0]}, not 10: not a MySQL protocol greeting")
    try:
        end = p.index(b"\0", 1)
        version = p[1:end].decode("utf-8", "replace")
        i = end + 1 + 4 + 8 + 1  # connection id, auth data part 1, filler
        cap_low = struct.unpack_from("<H", p, i)[0]
        i += 2
        caps, extended, plugin = cap_low, 0, ""
        if len(p) > i:
            i += 1 + 2  # character set, status flags
            cap_high = struct.unpack_from("<H", p, i)[0]
            i += 2
            caps = cap_low | cap_high << 16
            auth_len = p[i]
            i += 1
            reserved = p[i : i + 10]
            i += 10
            if not caps & CLIENT_LONG_PASSWORD:
                extended = struct.unpack_from("<I", reserved, 6)[0]
            if caps & CLIENT_SECURE_CONNECTION:
                i += max(13, auth_len - 8)
            if caps & CLIENT_PLUGIN_AUTH and i < len(p):
                stop = p.find(b"\0", i)
                plugin = p[i : stop if stop >= 0 else len(p)].decode("ascii", "replace")
    except (ValueError, struct.error, IndexError) as exc:
        raise GreetingError(f"a truncated greeting ({len(p)} bytes): {exc}") from None
    return Greeting(10, version, caps, plugin, extended, len(p))
