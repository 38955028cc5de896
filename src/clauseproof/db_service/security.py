"""BZ-SEC-1 (seed 003 三、3): the security of data in transit, and a trail of who changed what, when.

Transport: the harness opens its own TLS session the way each engine's clients do (PostgreSQL's SSLRequest, MySQL's
SSL request after the greeting) and records the protocol version, the cipher and the server's certificate (subject,
issuer, validity, key, self-signed or not); TLS 1.2 or later is required. Then it logs in without TLS, with the right
password: the service must refuse, and refuse *because* the connection is unencrypted (a refusal for another reason is
not shown, never a pass). A service that accepts plaintext fails, whatever it declares.

Audit: the harness makes a table, inserts, updates and deletes a row — each statement carrying a random marker — and
reads the service's audit trail: each statement must be there, on a line that names the harness's user and a time
within two minutes of when it ran (in UTC or in the server's own time zone). Cheats kept in the self-tests, judged
FAIL: a trail that leaves out the deletes, one that records statements without user or time, a service that accepts
plaintext.
"""

from __future__ import annotations

import datetime
import re
import secrets
import socket
import ssl
import struct
import time
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from clauseproof.core.errors import first_line
from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import Text, msg
from clauseproof.db_service.handshake import CLIENT_SSL, GreetingError, parse_greeting
from clauseproof.targets.base import open_endpoint
from clauseproof.targets.roles import AuditTrail, Database

CLAUSE = "BZ-SEC-1"
TIMEOUT_S = 5.0
#: How far an audit line's time may be from the statement's (clock skew, the trail's own delay).
AUDIT_SKEW_S = 120.0
#: How long the trail may take to show the statements.
AUDIT_WAIT_S = 15.0
OK_PROTOCOLS = ("TLSv1.2", "TLSv1.3")


@dataclass(frozen=True)
class TlsFacts:
    offered: bool
    protocol: str = ""
    cipher: str = ""
    certificate: dict[str, Any] | None = None
    why_not: Text | str = ""


def _certificate(der: bytes | None) -> dict[str, Any] | None:
    if not der:
        return None
    c = x509.load_der_x509_certificate(der)
    return {
        "subject": c.subject.rfc4514_string(),
        "issuer": c.issuer.rfc4514_string(),
        "self_signed": c.subject == c.issuer,
        "not_before": c.not_valid_before_utc.isoformat(),
        "not_after": c.not_valid_after_utc.isoformat(),
        "key": type(c.public_key()).__name__.lstrip("_"),
        "signature": c.signature_hash_algorithm.name if c.signature_hash_algorithm else "",
        "sha256": c.fingerprint(hashes.SHA256()).hex(),
    }


def _wrap(sock: socket.socket) -> TlsFacts:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # recorded, not trusted: the chain is the evidence's, the judgement the reader's
    with ctx.wrap_socket(sock) as tls:
        cipher = tls.cipher()
        return TlsFacts(True, tls.version() or "", cipher[0] if cipher else "", _certificate(tls.getpeercert(True)))


def tls_facts(dialect: str, host: str, port: int) -> TlsFacts:
    """Open a TLS session as the engine's clients do; what the server offered (never raises)."""
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_S) as s:
            s.settimeout(TIMEOUT_S)
            if dialect == "postgresql":
                s.sendall(struct.pack("!ii", 8, 80877103))  # SSLRequest
                answer = s.recv(1)
                if answer != b"S":
                    return TlsFacts(False, why_not=msg("tls_pg_refused", answer=repr(answer)))
                return _wrap(s)
            head = s.recv(4)
            length = head[0] | head[1] << 8 | head[2] << 16
            body = b""
            while len(body) < length:
                chunk = s.recv(length - len(body))
                if not chunk:
                    break
                body += chunk
            g = parse_greeting(body)
            if not g.capabilities & CLIENT_SSL:
                return TlsFacts(False, why_not=msg("tls_mysql_not_offered"))
            caps = CLIENT_SSL | 0x200 | 0x8000 | 0x80000  # PROTOCOL_41, SECURE_CONNECTION, PLUGIN_AUTH
            payload = struct.pack("<IIB", caps, 1 << 24, 45) + b"\0" * 23
            s.sendall(struct.pack("<I", len(payload))[:3] + b"\x01" + payload)
            return _wrap(s)
    except (OSError, GreetingError, ssl.SSLError, IndexError) as exc:
        return TlsFacts(False, why_not=msg("tls_no_session", error=str(exc)))


def plaintext_login(target: Database) -> tuple[bool, str]:
    """(accepted, what happened) for a login without TLS, with the right password."""
    ep = target.address()
    extra = {"sslmode": "disable"} if target.dialect == "postgresql" else {"ssl_disabled": True}
    try:
        conn = open_endpoint(target.dialect, ep, None, "", extra)
    except Exception as exc:
        return False, first_line(exc)
    conn.close()
    return True, "a plaintext login succeeded"


def _refused_for_plaintext(message: str) -> bool:
    m = message.lower()
    return any(w in m for w in ("no encryption", "ssl off", "insecure transport", "3159", "ssl connection is required"))


def check_transport(target: Database, evidence: CaseEvidence, declared_required: bool | None) -> None:
    ep = target.address()
    facts = tls_facts(target.dialect, ep.host, ep.port)
    accepted, what = plaintext_login(target)
    evidence.parameters(
        tls=facts.__dict__,
        plaintext_login=what,
        tls_required_declared=declared_required,
    )
    if facts.offered:
        cert = facts.certificate or {}
        offered = msg(
            "tls_offered_how",
            protocol=facts.protocol,
            cipher=facts.cipher,
            subject=cert.get("subject", "none"),
            issuer=cert.get("issuer", "?"),
        )
        negotiated = msg("tls_negotiated", protocol=facts.protocol)
        evidence.part(CLAUSE, facts.protocol in OK_PROTOCOLS, statistic=offered, why=negotiated)
    else:
        evidence.part(CLAUSE, False, statistic=msg("tls_offered"), why=facts.why_not)
    if accepted:
        plaintext = msg("plaintext_accepted_declared" if declared_required else "plaintext_accepted")
        evidence.part(CLAUSE, False, statistic=msg("plaintext_refused"), why=plaintext)
    elif _refused_for_plaintext(what):
        evidence.part(CLAUSE, True, statistic=msg("plaintext_refused_how", how=what[:120]))
    else:
        other = msg("plaintext_failed_otherwise", how=what[:200])
        evidence.part(CLAUSE, None, statistic=msg("plaintext_refused"), not_shown=other)


_TIME = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")


def _times(line: str) -> list[datetime.datetime]:
    out = []
    for m in _TIME.finditer(line):
        try:
            y, mo, d, h, mi, sec = (int(g) for g in m.groups())
            out.append(datetime.datetime(y, mo, d, h, mi, sec, tzinfo=datetime.UTC))
        except ValueError:
            continue
    return out


def _server_offset(target: Database) -> float:
    """Seconds between the server's local clock (as its SQL shows it, without a zone) and UTC here."""
    conn = target.connect(in_namespace=False)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT LOCALTIMESTAMP" if target.dialect == "postgresql" else "SELECT NOW()")
            local = cur.fetchone()[0]
    finally:
        conn.close()
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    return round((local - now).total_seconds() / 900) * 900  # zones are whole quarter hours


def check_audit(target: Database, trail: AuditTrail, evidence: CaseEvidence, wait_s: float = AUDIT_WAIT_S) -> None:
    marker = f"cpaudit{secrets.token_hex(5)}"
    user = target.address().user
    offset = _server_offset(target)
    trail.audit_start()
    statements = {
        "CREATE TABLE": f"CREATE TABLE {marker} (id INT PRIMARY KEY, note VARCHAR(40))",
        "INSERT": f"INSERT INTO {marker} VALUES (1, '{marker}-insert')",
        "UPDATE": f"UPDATE {marker} SET note = '{marker}-update' WHERE id = 1",
        "DELETE": f"DELETE FROM {marker} WHERE id = 1",
    }
    # an entry is the statement's own text (its verb, then the marked table, perhaps qualified), not any line that
    # mentions the marker
    verbs = {k: r"\s+".join(k.split()) for k in statements}
    heads = {k: re.compile(rf"\b{verbs[k]}\b.*?\b(?:\w+\.)?{marker}\b", re.IGNORECASE) for k in statements}
    ran: dict[str, datetime.datetime] = {}
    conn = target.connect()
    try:
        with conn.cursor() as cur:
            for kind, sql in statements.items():
                cur.execute(sql)
                ran[kind] = datetime.datetime.now(datetime.UTC)
            cur.execute(f"DROP TABLE {marker}")
    finally:
        conn.close()
    deadline = time.monotonic() + wait_s
    while True:
        lines = trail.audit_entries()
        found = {k: [ln for ln in lines if heads[k].search(ln)] for k in statements}
        if all(found.values()) or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    evidence.parameters(audit_source=trail.audit_source, audit_marker=marker, audit_user=user,
                        audit_lines=[ln[:300] for ln in lines if marker in ln][:20],
                        server_clock_offset_s=offset)  # fmt: skip
    missing = [k for k, v in found.items() if not v]
    in_trail = msg("audit_in_trail", marker=marker, wait=f"{wait_s:g}")
    not_in = msg("audit_not_in_trail", missing=", ".join(missing), lines=len(lines))
    evidence.part(CLAUSE, not missing, statistic=in_trail, why=not_in)
    unnamed, untimed = [], []
    word = re.compile(rf"(?<![\w]){re.escape(user)}(?![\w])")
    for kind, matches in found.items():
        if not matches:
            continue
        if not any(word.search(ln) for ln in matches):
            unnamed.append(kind)
        at = ran[kind]
        if not any(
            abs((t - at).total_seconds() - o) <= AUDIT_SKEW_S for ln in matches for t in _times(ln) for o in (0, offset)
        ):
            untimed.append(kind)
    present = [k for k in statements if found[k]]
    evidence.part(
        CLAUSE,
        (not unnamed and not untimed) if present else None,
        statistic=msg("audit_user_time", user=user, skew=f"{AUDIT_SKEW_S:g}"),
        why=_why_unattributed(unnamed, untimed),
        not_shown=msg("audit_nothing_to_read"),
    )


def _why_unattributed(unnamed: list[str], untimed: list[str]) -> str:
    parts = [f"no user on {', '.join(unnamed)}" if unnamed else "",
             f"no time near the change on {', '.join(untimed)}" if untimed else ""]  # fmt: skip
    return "; ".join(p for p in parts if p)
