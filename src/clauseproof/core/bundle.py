"""The evidence bundle a third party can check: a manifest of every file's SHA-256 and SM3, signed with Ed25519.

``manifest.json`` lists every file of the run folder (itself and its signature excepted) with its size,
SHA-256 and SM3, and the harness version and commit, the catalog's and the tender documents' hashes.
``manifest.sig`` holds an Ed25519 signature over the manifest's bytes and the public key (and an SM2
signature with SM3 made by the machine's OpenSSL, where it has SM2); the report
prints the key's fingerprint, so a witness checks that the bundle was signed by the tester's key and
not re-signed by whoever changed it.  ``clauseproof verify`` checks both.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import tempfile
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
#: the distinguishing identifier of SM2 signatures (GB/T 35276's default user ID)
SM2_ID = "1234567812345678"
_OPENSSL_TIMEOUT = 30
_SM2_OPTS = ("-rawin", "-digest", "sm3", "-pkeyopt")


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


def sm2_key(ed25519_path: Path) -> Path | None:
    """The SM2 key beside the Ed25519 one (``signing-sm2.pem``), made with OpenSSL on first use; None where this
    machine's OpenSSL has no SM2."""
    path = ed25519_path.with_name("signing-sm2.pem")
    if path.exists():
        return path
    try:
        made = subprocess.run(
            ["openssl", "genpkey", "-algorithm", "SM2", "-out", str(path)],
            capture_output=True,
            timeout=_OPENSSL_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if made.returncode != 0:
        path.unlink(missing_ok=True)
        return None
    path.chmod(0o600)
    return path


def _sm2_sign(key: Path, data_path: Path) -> dict[str, str] | None:
    """An SM2 signature with SM3 (OpenSSL's pkeyutl) over a file, and the public key; None where OpenSSL fails."""
    try:
        sig = subprocess.run(
            ["openssl", "pkeyutl", "-sign", "-inkey", str(key), *_SM2_OPTS, f"distid:{SM2_ID}", "-in", str(data_path)],
            capture_output=True,
            timeout=_OPENSSL_TIMEOUT,
            check=True,
        ).stdout
        pub = subprocess.run(
            ["openssl", "pkey", "-in", str(key), "-pubout"], capture_output=True, timeout=_OPENSSL_TIMEOUT, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {
        "algorithm": "SM2-with-SM3",
        "distid": SM2_ID,
        "public_key_pem": pub.decode(),
        "signature": base64.b64encode(sig).decode(),
    }


def _sm2_verify(entry: dict[str, str], data_path: Path) -> str:
    """ "" when the SM2 signature holds; otherwise what is wrong (or that it could not be checked here)."""
    with tempfile.TemporaryDirectory(prefix="clauseproof-sm2-") as tmp:
        pub, sig = Path(tmp) / "pub.pem", Path(tmp) / "sig.der"
        pub.write_text(entry["public_key_pem"])
        sig.write_bytes(base64.b64decode(entry["signature"]))
        distid = f"distid:{entry.get('distid', SM2_ID)}"
        try:
            done = subprocess.run(
                [
                    "openssl",
                    "pkeyutl",
                    "-verify",
                    "-pubin",
                    "-inkey",
                    str(pub),
                    *_SM2_OPTS,
                    distid,
                    "-in",
                    str(data_path),
                    "-sigfile",
                    str(sig),
                ],
                capture_output=True,
                text=True,
                timeout=_OPENSSL_TIMEOUT,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"the SM2 signature could not be checked here: {exc}"
    if done.returncode == 0:
        return ""
    if "Signature Verification Failure" in done.stdout + done.stderr:
        return f"the SM2 signature does not match {MANIFEST}"
    return f"the SM2 signature could not be checked here: {(done.stderr or done.stdout).strip()[:200]}"


def sign(folder: Path, key: Ed25519PrivateKey, sm2: Path | None = None) -> dict[str, Any]:
    """Sign ``manifest.json``'s bytes; ``manifest.sig`` holds the algorithm, public key, fingerprint, signature,
    and an SM2 signature (GB/T 35275 style, SM3 digest) where ``sm2`` names a key OpenSSL can use."""
    data = (folder / MANIFEST).read_bytes()
    public = key.public_key()
    sig: dict[str, Any] = {
        "algorithm": "Ed25519",
        "public_key": public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex(),
        "fingerprint": fingerprint(public),
        "signature": base64.b64encode(key.sign(data)).decode(),
        "signed": MANIFEST,
    }
    if sm2 is not None:
        entry = _sm2_sign(sm2, folder / MANIFEST)
        if entry is not None:
            sig["sm2"] = entry
    write_atomic(folder / SIGNATURE, json.dumps(sig, indent=1) + "\n")
    return sig


@dataclass
class Verification:
    """What ``verify`` found: problems (each a sentence) and what was checked."""

    folder: Path
    fingerprint: str = ""
    checked: int = 0
    sm2: bool = False  # an SM2 signature was present and holds
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
    if "sm2" in sig:
        problem = _sm2_verify(sig["sm2"], folder / MANIFEST)
        if problem:
            v.problems.append(problem)
        else:
            v.sm2 = True
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
