"""Secrets the run knows, and their masking everywhere the run writes: the bundle, the logs, the console.

Every value read from an environment variable that a profile (or an option) names is a secret: it is read through
:func:`from_env`, which remembers it, and the evidence records the variable's name, never the value.  The session
masks every remembered value (and every URL password) in the evidence document before it is written; the log
record factory masks them in every log line; the plugin masks them in the failure text pytest prints.
"""

from __future__ import annotations

import logging
import os
import re
import threading

from clauseproof.core.errors import ClauseproofError

MASK = "***"
#: shorter values are masked in URLs only (masking every "abc" would mangle ordinary words)
MIN_LEN = 4
_URL_PASSWORD = re.compile(r"(\w+://[^:/@\s]*:)([^@\s]+)(@)")

_known: set[str] = set()
_lock = threading.Lock()


def remember(value: str | None) -> None:
    """Treat ``value`` as a secret from now on (a password the harness made, a key read from the environment)."""
    if value:
        with _lock:
            _known.add(value)


def known() -> frozenset[str]:
    with _lock:
        return frozenset(_known)


def from_env(name: str, what: str, *, required: bool = True) -> str | None:
    """The value of the environment variable ``name`` (named by a profile for ``what``), remembered as a secret;
    a clear error when it is required and not set."""
    value = os.environ.get(name)
    if value is None:
        if not required:
            return None
        raise ClauseproofError(
            f"{what} is read from the environment variable {name}, which is not set",
            fix=f"export {name}=... before the run (its value is never written to results, logs or the console)",
        )
    remember(value)
    return value


def mask(text: str, extra: frozenset[str] | set[str] = frozenset()) -> str:
    """``text`` with every URL password and every known secret (and ``extra``) replaced by ``***``."""
    text = _URL_PASSWORD.sub(rf"\1{MASK}\3", text)
    for secret in sorted((s for s in known() | extra if len(s) >= MIN_LEN), key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


_installed = False


def install_log_masking() -> None:
    """Mask secrets in every log record, whatever logger or handler writes it (once per process)."""
    global _installed
    if _installed:
        return
    _installed = True
    factory = logging.getLogRecordFactory()

    def masked(*args: object, **kwargs: object) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        if known():
            try:
                message = record.getMessage()
            except Exception:  # a bad format string: leave it to logging's own error path
                return record
            record.msg, record.args = mask(message), None
        return record

    logging.setLogRecordFactory(masked)


def new_secret(nbytes: int = 24, prefix: str = "") -> str:
    """A random password or credential for a service the harness starts, remembered (masked wherever it shows)."""
    import secrets

    value = prefix + secrets.token_urlsafe(nbytes)
    remember(value)
    return value


#: what of the harness's environment every child it starts sees: the machine's basics, never a vendor's secret, a
#: key or another section's credential (each child gets its own values explicitly, through ``extra``)
BASE_ENV = (
    "PATH", "HOME", "LANG", "LANGUAGE", "TZ", "USER", "LOGNAME", "SHELL", "TMPDIR", "TERM", "SSH_AUTH_SOCK",
    "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
    "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "PYTHONDONTWRITEBYTECODE", "VIRTUAL_ENV",
)  # fmt: skip
_passed: set[str] = set()


def pass_env(names: list[str] | tuple[str, ...]) -> None:
    """Variables a profile names (``[target] pass_env``) that its vendor commands need: passed to children too."""
    _passed.update(names)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child the harness starts: :data:`BASE_ENV`, ``LC_*``, the variables a profile asked to
    pass, and ``extra`` (the child's own password, paths)."""
    env = {k: v for k, v in os.environ.items() if k in BASE_ENV or k.startswith("LC_") or k in _passed}
    env.update(extra or {})
    return env
