"""A local certificate authority and a server certificate, made on first start.

Clients trust the CA (AWS_CA_BUNDLE); the CA key stays in the data dir (0600) so the server
certificate can be re-issued when it nears expiry or the host names change.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_VALIDITY = dt.timedelta(days=90)
RENEW_BEFORE = dt.timedelta(days=14)


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    cert: Path
    key: Path


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lambdalet"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _make_ca(tls_dir: Path):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name("lambdalet local CA")).issuer_name(_name("lambdalet local CA"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write(tls_dir / "ca.key", _pem_key(key), 0o600)
    _write(tls_dir / "ca.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _sans(extra_hosts: list[str]) -> list[x509.GeneralName]:
    names = {"localhost", socket.gethostname(), *extra_hosts}
    out: list[x509.GeneralName] = []
    ips = {"127.0.0.1", "::1"}
    for n in sorted(names):
        try:
            ips.add(str(ipaddress.ip_address(n)))
        except ValueError:
            if n and n not in ("0.0.0.0", "::"):
                out.append(x509.DNSName(n))
    out += [x509.IPAddress(ipaddress.ip_address(i)) for i in sorted(ips)]
    return out


def _needs_new_cert(cert_path: Path, sans: list[x509.GeneralName]) -> bool:
    if not cert_path.exists():
        return True
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    if cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc) < RENEW_BEFORE:
        return True
    have = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    return not set(sans) <= have


def ensure_tls(tls_dir: Path, hosts: list[str]) -> TlsFiles:
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not (tls_dir / "ca.pem").exists() or not (tls_dir / "ca.key").exists():
        _make_ca(tls_dir)
    files = TlsFiles(tls_dir / "ca.pem", tls_dir / "server.pem", tls_dir / "server.key")
    sans = _sans(hosts)
    if _needs_new_cert(files.cert, sans):
        ca_key = serialization.load_pem_private_key((tls_dir / "ca.key").read_bytes(), None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):     # _make_ca's kind: anything else was put there
            raise ValueError(f"{tls_dir / 'ca.key'} is not an EC private key")
        ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(_name("lambdalet")).issuer_name(ca_cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + SERVER_VALIDITY)
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256()))
        _write(files.key, _pem_key(key), 0o600)
        _write(files.cert, cert.public_bytes(serialization.Encoding.PEM) + files.ca_cert.read_bytes(), 0o644)
    return files


def server_context(files: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2   # TLS 1.0/1.1 are refused, as AWS endpoints do
    ctx.load_cert_chain(files.cert, files.key)
    return ctx
