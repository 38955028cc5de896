"""The evidence bundle a third party can check: a manifest of every file's SHA-256 and SM3, signed with Ed25519.

``manifest.json`` lists every file of the run folder (itself and its signature excepted) with its size,
SHA-256 and SM3, and the harness version and commit, the catalog's and the tender documents' hashes.
``manifest.sig`` holds an Ed25519 signature over the manifest's bytes and the public key; the report
prints the key's fingerprint, so a witness checks that the bundle was signed by the tester's key and
not re-signed by whoever changed it.  ``clauseproof verify`` checks both.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from clauseproof.core.errors import ClauseproofError
from clauseproof.core.evidence import write_atomic

MANIFEST, SIGNATURE = "manifest.json", "manifest.sig"
_CHUNK = 1 << 20


def default_key_path() -> Path:
    base = Path(os.environ.get("XDG_CONFIG_HOME", "~/.config")).expanduser()
    return base / "clauseproof" / "signing-ed25519.pem"


def file_hashes(path: Path) -> dict[str, Any]:
    """Size, SHA-256 and SM3 (GB/T 32905) of one file, read once."""
    sha, sm3 = hashlib.sha256(), hashes.Hash(hashes.SM3())
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
            sm3.update(chunk)
            size += len(chunk)
    return {"bytes": size, "sha256": sha.hexdigest(), "sm3": sm3.finalize().hex()}


def _files(folder: Path) -> list[str]:
    """Every regular file below ``folder`` (relative, sorted), the manifest and its signature excepted."""
    out = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and not path.is_symlink() and rel not in (MANIFEST, SIGNATURE):
            out.append(rel)
    return out


def fingerprint(public: Ed25519PublicKey) -> str:
    """``SHA256:<hex>`` of the raw public key, as the report prints it."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + hashlib.sha256(raw).hexdigest()


def keygen(path: Path, *, overwrite: bool = False) -> Ed25519PrivateKey:
    """A new Ed25519 signing key, written to ``path`` (PEM, PKCS#8, readable by its owner only)."""
    if path.exists() and not overwrite:
        raise ClauseproofError(
            f"a signing key already exists at {path}",
            fix="keep it (reports signed with it stay verifiable), or give another path with --out",
        )
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key


def load_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ClauseproofError(
            f"cannot read the signing key {path}: {exc}",
            checked="--cp-signing-key, CLAUSEPROOF_SIGNING_KEY, then ~/.config/clauseproof/signing-ed25519.pem",
            fix="point it at a key `clauseproof keygen` wrote (an unencrypted Ed25519 PEM)",
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ClauseproofError(f"the signing key {path} is not an Ed25519 key", fix="make one with clauseproof keygen")
    return key


def write_manifest(folder: Path, document: dict[str, Any]) -> dict[str, Any]:
    """Hash every file of the run folder into ``manifest.json``."""
    manifest = {
        "format": "clauseproof-manifest/1",
        "run_id": document.get("run_id"),
        "harness": document.get("harness"),
        "catalog_sha256": document.get("parameters", {}).get("catalog_sha256"),
        "tender_documents": {b["file"]: b["sha256"] for b in document.get("basis", [])},
        "files": {rel: file_hashes(folder / rel) for rel in _files(folder)},
    }
    write_atomic(folder / MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    return manifest


def sign(folder: Path, key: Ed25519PrivateKey) -> dict[str, str]:
    """Sign ``manifest.json``'s bytes; ``manifest.sig`` holds the algorithm, public key, fingerprint, signature."""
    data = (folder / MANIFEST).read_bytes()
    public = key.public_key()
    sig = {
        "algorithm": "Ed25519",
        "public_key": public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex(),
        "fingerprint": fingerprint(public),
        "signature": base64.b64encode(key.sign(data)).decode(),
        "signed": MANIFEST,
    }
    write_atomic(folder / SIGNATURE, json.dumps(sig, indent=1) + "\n")
    return sig


@dataclass
class Verification:
    """What ``verify`` found: problems (each a sentence) and what was checked."""

    folder: Path
    fingerprint: str = ""
    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(folder: Path, *, expect_fingerprint: str = "") -> Verification:
    """Check the signature over the manifest and every file's hashes; name each file changed, added or removed."""
    v = Verification(folder)
    try:
        manifest_bytes = (folder / MANIFEST).read_bytes()
        manifest = json.loads(manifest_bytes)
        sig = json.loads((folder / SIGNATURE).read_text())
        public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(sig["public_key"]))
        signature = base64.b64decode(sig["signature"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        v.problems.append(f"cannot read {MANIFEST} and {SIGNATURE} in {folder}: {exc}")
        return v
    v.fingerprint = fingerprint(public)
    try:
        public.verify(signature, manifest_bytes)
    except InvalidSignature:
        v.problems.append(f"the signature does not match {MANIFEST}: the manifest was changed after signing")
    if expect_fingerprint and expect_fingerprint != v.fingerprint:
        v.problems.append(f"signed by key {v.fingerprint}, not by the expected {expect_fingerprint}")
    listed: dict[str, dict[str, Any]] = manifest.get("files", {})
    present = set(_files(folder))
    for rel in sorted(set(listed) - present):
        v.problems.append(f"removed: {rel}")
    for rel in sorted(present - set(listed)):
        v.problems.append(f"added: {rel} (not in the manifest)")
    for rel in sorted(present & set(listed)):
        v.checked += 1
        if file_hashes(folder / rel) != listed[rel]:
            v.problems.append(f"changed: {rel} (its SHA-256/SM3 differ from the manifest)")
    return v
