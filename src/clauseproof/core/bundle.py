"""The evidence bundle a third party can check: a manifest of every file's SHA-256 and SM3, signed with Ed25519.

``manifest.json`` lists every file of the run folder (itself and its signature excepted) with its size,
SHA-256 and SM3, and the harness version and commit, the catalog's and the tender documents' hashes.
``manifest.sig`` holds an Ed25519 signature over the manifest's bytes and the public key (and an SM2
signature with SM3 made by the machine's OpenSSL, where it has SM2); the report
prints the key's fingerprint, so a witness checks that the bundle was signed by the tester's key and
not re-signed by whoever changed it.  ``clauseproof verify`` checks both.

The manifest names both signing keys (``signers``), so the Ed25519 signature pins the SM2 key and the SM2
signature pins the Ed25519 one: an SM2 entry from another key, or one stripped, is found.  A bundle is only
OK against a key the witness trusts (a fingerprint, or a list of them): without one, a bundle re-signed by
anyone would be "consistent".  Everything in the folder that the manifest does not list (a file, a link, a
folder, a device) is reported, and a manifest whose shape is not the harness's is refused, not crashed on.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import stat
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
FORMAT = "clauseproof-manifest/2"
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


def sm2_fingerprint(public_pem: str) -> str:
    """``SM2-SHA256:<hex>`` of an SM2 public key (its DER SubjectPublicKeyInfo)."""
    body = "".join(line for line in public_pem.strip().splitlines() if not line.startswith("-----"))
    return "SM2-SHA256:" + hashlib.sha256(base64.b64decode(body, validate=True)).hexdigest()


_FINGERPRINT = re.compile(r"(SHA256|SM2-SHA256):[0-9a-f]{64}")


def parse_fingerprints(values: list[str]) -> list[str]:
    """Fingerprints given on the command line or in a trusted-keys file (``#`` comments, blank lines), checked."""
    out = []
    for value in values:
        for word in value.replace(",", " ").split():
            if not _FINGERPRINT.fullmatch(word):
                raise ClauseproofError(
                    f"{word!r} is not a key fingerprint",
                    checked="SHA256:<64 hex digits> (Ed25519, as the report prints it) or SM2-SHA256:<64 hex digits>",
                    fix="copy the fingerprint from the signed report or from the signer, whole",
                )
            out.append(word)
    return out


def read_trusted_keys(path: Path) -> list[str]:
    """The fingerprints in a trusted-keys file: one or more a line, ``#`` starts a comment."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ClauseproofError(f"cannot read the trusted-keys file {path}: {exc}") from None
    return parse_fingerprints([line.split("#", 1)[0] for line in lines])


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


def sm2_public_pem(key: Path) -> str | None:
    """The public half of an SM2 key file, PEM, or None where OpenSSL cannot read it."""
    try:
        return subprocess.run(
            ["openssl", "pkey", "-in", str(key), "-pubout"], capture_output=True, timeout=_OPENSSL_TIMEOUT, check=True
        ).stdout.decode()
    except (OSError, subprocess.SubprocessError):
        return None


def signers(key: Ed25519PrivateKey | None, sm2: Path | None = None) -> dict[str, str | None]:
    """The fingerprints of the keys that will sign the manifest (named inside it, so each signature pins both)."""
    pem = sm2_public_pem(sm2) if sm2 is not None else None
    return {
        "ed25519": fingerprint(key.public_key()) if key is not None else None,
        "sm2": sm2_fingerprint(pem) if pem else None,
    }


def write_manifest(
    folder: Path, document: dict[str, Any], signed_by: dict[str, str | None] | None = None
) -> dict[str, Any]:
    """Hash every file of the run folder into ``manifest.json``, naming the keys that will sign it."""
    manifest = {
        "format": FORMAT,
        "signers": signed_by or {"ed25519": None, "sm2": None},
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
    named = json.loads(data).get("signers") or {}
    if named.get("ed25519") != fingerprint(public):
        raise ClauseproofError(
            f"{MANIFEST} names signing key {named.get('ed25519')}, not {fingerprint(public)}",
            fix="write the manifest with write_manifest(..., signers(key, sm2)) for the key that signs",
        )
    sig: dict[str, Any] = {
        "algorithm": "Ed25519",
        "public_key": public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex(),
        "fingerprint": fingerprint(public),
        "signature": base64.b64encode(key.sign(data)).decode(),
        "signed": MANIFEST,
    }
    if sm2 is not None and named.get("sm2"):
        entry = _sm2_sign(sm2, folder / MANIFEST)
        if entry is None or sm2_fingerprint(entry["public_key_pem"]) != named["sm2"]:
            raise ClauseproofError(f"the SM2 key {sm2} could not sign {MANIFEST} as the key it names")
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


def _entries(folder: Path) -> tuple[set[str], list[str]]:
    """Every regular file below ``folder`` (relative; the manifest and its signature excepted), and a sentence for
    everything else there: links (never followed), sockets, devices, and folders (checked against the files
    later)."""
    files: set[str] = set()
    others: list[str] = []
    for root, dirs, names in os.walk(folder, followlinks=False):
        for name in sorted(dirs + names):
            path = Path(root) / name
            rel = path.relative_to(folder).as_posix()
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                others.append(f"added: {rel} (a link to {os.readlink(path)}, not in the manifest)")
            elif stat.S_ISDIR(st.st_mode):
                others.append(f"folder:{rel}")
            elif stat.S_ISREG(st.st_mode):
                if rel not in (MANIFEST, SIGNATURE):
                    files.add(rel)
            else:
                others.append(f"added: {rel} (not a regular file, not in the manifest)")
    return files, others


def _safe_rel(rel: str) -> bool:
    parts = rel.split("/")
    return bool(rel) and not rel.startswith("/") and "\\" not in rel and all(p not in ("", ".", "..") for p in parts)


def _manifest_problem(manifest: Any, sig: Any) -> str:
    """What makes the manifest or the signature file not of the harness's shape ("" when both are)."""
    if not isinstance(manifest, dict) or not isinstance(sig, dict):
        return "they are not JSON objects"
    files = manifest.get("files")
    if not isinstance(files, dict):
        return "the manifest has no 'files' object"
    for rel, entry in files.items():
        if not _safe_rel(rel):
            return f"the manifest lists {rel!r}, not a plain path inside the run folder"
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("bytes"), int)
            and isinstance(entry.get("sha256"), str)
            and isinstance(entry.get("sm3"), str)
        ):
            return f"the manifest's entry for {rel} is not {{bytes, sha256, sm3}}"
    named = manifest.get("signers")
    if not isinstance(named, dict) or not all(isinstance(named.get(k), str | None) for k in ("ed25519", "sm2")):
        return f"the manifest names no signers (format {manifest.get('format')!r}, not {FORMAT})"
    for k in ("public_key", "signature"):
        if not isinstance(sig.get(k), str):
            return f"{SIGNATURE} has no {k} string"
    sm2 = sig.get("sm2")
    if sm2 is not None and not (
        isinstance(sm2, dict) and all(isinstance(sm2.get(k), str) for k in ("public_key_pem", "signature"))
    ):
        return f"{SIGNATURE}'s sm2 entry is not {{public_key_pem, signature}}"
    return ""


def verify(folder: Path, *, trusted: list[str] | tuple[str, ...] = (), expect_fingerprint: str = "") -> Verification:
    """Check the signatures over the manifest, the keys against ``trusted`` fingerprints (required for an OK), and
    every file's hashes; name each file changed, added or removed, and everything else the folder holds."""
    v = Verification(folder)
    trusted = [*trusted, *([expect_fingerprint] if expect_fingerprint else [])]
    try:
        manifest_bytes = (folder / MANIFEST).read_bytes()
        manifest = json.loads(manifest_bytes)
        sig = json.loads((folder / SIGNATURE).read_text())
    except (OSError, ValueError) as exc:
        v.problems.append(f"cannot read {MANIFEST} and {SIGNATURE} in {folder}: {exc}")
        return v
    problem = _manifest_problem(manifest, sig)
    if problem:
        v.problems.append(f"{MANIFEST} or {SIGNATURE} is not the harness's: {problem}")
        return v
    try:
        public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(sig["public_key"]))
        signature = base64.b64decode(sig["signature"], validate=True)
    except ValueError as exc:
        v.problems.append(f"{SIGNATURE} holds no Ed25519 public key and signature: {exc}")
        return v
    v.fingerprint = fingerprint(public)
    try:
        public.verify(signature, manifest_bytes)
    except InvalidSignature:
        v.problems.append(f"the signature does not match {MANIFEST}: the manifest was changed after signing")
    named = manifest["signers"]
    if named.get("ed25519") != v.fingerprint:
        v.problems.append(f"signed by key {v.fingerprint}, but {MANIFEST} names {named.get('ed25519')}")
    keys = [v.fingerprint]
    if named.get("sm2"):
        if "sm2" not in sig:
            v.problems.append(f"{MANIFEST} names an SM2 signature by {named['sm2']}, and {SIGNATURE} has none")
        else:
            try:
                sm2_fp = sm2_fingerprint(sig["sm2"]["public_key_pem"])
            except ValueError:
                sm2_fp = "(no key)"
            if sm2_fp != named["sm2"]:
                v.problems.append(f"the SM2 signature is by key {sm2_fp}, but {MANIFEST} names {named['sm2']}")
            problem = _sm2_verify(sig["sm2"], folder / MANIFEST)
            if problem:
                v.problems.append(problem)
            elif sm2_fp == named["sm2"]:
                v.sm2 = True
                keys.append(sm2_fp)
    elif "sm2" in sig:
        v.problems.append(f"{SIGNATURE} has an SM2 signature that {MANIFEST} does not name: it was added")
    if not trusted:
        v.problems.append(
            "no trusted key given: a bundle re-signed by whoever changed it would look consistent; pass the "
            "signer's fingerprint (--fingerprint, as the signed report prints it) or --trusted-keys FILE"
        )
    elif not set(keys) & set(trusted):
        v.problems.append(f"signed by key {v.fingerprint}, not by a trusted key ({', '.join(trusted)})")
    listed: dict[str, dict[str, Any]] = manifest["files"]
    present, others = _entries(folder)
    folders_needed = {"/".join(rel.split("/")[:i]) for rel in listed for i in range(1, rel.count("/") + 1)}
    for rel in sorted(set(listed) - present):
        v.problems.append(f"removed: {rel}")
    for rel in sorted(present - set(listed)):
        v.problems.append(f"added: {rel} (not in the manifest)")
    for other in others:
        if other.startswith("folder:"):
            if other[7:] not in folders_needed and not any(p.startswith(other[7:] + "/") for p in present):
                v.problems.append(f"added: {other[7:]}/ (an empty folder, not in the manifest)")
        else:
            v.problems.append(other)
    for rel in sorted(present & set(listed)):
        v.checked += 1
        if file_hashes(folder / rel) != listed[rel]:
            v.problems.append(f"changed: {rel} (its SHA-256/SM3 differ from the manifest)")
    return v
