"""A certificate authority of one run, for the services the harness starts that speak TLS (etcd's client and peer
ports): made in memory (ECDSA P-256, valid for a day), its key never written; each service gets a certificate for
its own address and a key readable by its OS user only.  Mutual TLS means a local user without a certificate of
this run's gets no answer from the service at all."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


class RunCA:
    """A CA of one run; :meth:`issue` writes a certificate and key into a folder, owned by ``owner``."""

    def __init__(self, name: str) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"clauseproof {name} CA")])
        self._name = subject
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self._key, hashes.SHA256())
        )

    def write_ca(self, folder: Path, owner: str | None = None) -> Path:
        path = folder / "ca.pem"
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        _own(path, owner, 0o644)
        return path

    def issue(self, folder: Path, name: str, ips: list[str], owner: str | None = None) -> Issued:
        """A certificate for ``name`` at ``ips`` (server and client use: etcd's peers are both)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]), critical=False
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        out = Issued(folder / f"{name}.pem", folder / f"{name}-key.pem")
        fd = os.open(out.key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
        _own(out.key, owner, 0o600)
        out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _own(out.cert, owner, 0o644)
        return out


def _own(path: Path, owner: str | None, mode: int) -> None:
    path.chmod(mode)
    if owner and os.geteuid() == 0:
        shutil.chown(path, user=owner, group=owner)
