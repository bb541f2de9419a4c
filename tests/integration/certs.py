"""Throwaway certificates for TLS tests: a CA, and certificates it issues for 127.0.0.1.

Made with the ``cryptography`` package when it is installed, else with the ``openssl``
command; tests skip when neither is there. Every certificate names IP 127.0.0.1 and
``localhost`` (so it serves as a server certificate on loopback) and may name vyked services
as SAN URIs ``vyked://<Service>`` (what ``--require-identity`` checks); it can serve as a
client certificate too. ``expired=True`` makes one valid only for a day in 2020.

::

    ca = CertificateAuthority(tmp_path / "ca")
    server = ca.issue("registry")
    host_a = ca.issue("host-a", services=["A"])
"""

from __future__ import annotations

import datetime
import importlib.util
import ipaddress
import shutil
import ssl
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

EXPIRED_FROM = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
EXPIRED_UNTIL = datetime.datetime(2020, 1, 2, tzinfo=datetime.UTC)


def backend() -> str:
    """``cryptography`` or ``openssl``: what makes the certificates here (skips if neither)."""
    if importlib.util.find_spec("cryptography") is not None:
        return "cryptography"
    if shutil.which("openssl"):
        return "openssl"
    pytest.skip("TLS tests need the cryptography package or the openssl command")


@dataclass(frozen=True)
class Credentials:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path

    def server_context(self, ca: Path | None = None) -> ssl.SSLContext:
        """Serves TLS with this certificate; with ``ca``, requires client certificates from it."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        if ca is not None:
            context.load_verify_locations(ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def client_context(self, ca: Path) -> ssl.SSLContext:
        """Verifies servers against ``ca`` and presents this certificate."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
        context.load_cert_chain(self.cert, self.key)
        return context


class CertificateAuthority:
    """A self-signed CA in ``directory``; :attr:`cert` is the file peers trust."""

    def __init__(self, directory: Path, name: str = "vyked test CA") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.backend = backend()
        self.cert = directory / "ca.pem"
        self.key = directory / "ca.key"
        if self.backend == "cryptography":
            _CryptographyCA.create(self)
        else:
            _OpenSSLCA.create(self)

    def issue(self, common_name: str, *, services: Sequence[str] = (), expired: bool = False) -> Credentials:
        """A certificate for 127.0.0.1 with CN ``common_name`` and a SAN URI
        ``vyked://<service>`` per service; ``expired`` makes it one that expired in 2020."""
        stem = common_name.replace(" ", "_") + ("-expired" if expired else "")
        credentials = Credentials(self.directory / f"{stem}.pem", self.directory / f"{stem}.key")
        if self.backend == "cryptography":
            _CryptographyCA.issue(self, credentials, common_name, services, expired)
        else:
            _OpenSSLCA.issue(self, credentials, common_name, services, expired)
        return credentials

    def client_context(self) -> ssl.SSLContext:
        """Verifies servers against this CA, presenting no certificate of its own."""
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.cert))


class _CryptographyCA:
    @staticmethod
    def create(ca: CertificateAuthority) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca.name)])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
            .add_extension(_key_usage(ca=True), critical=True)
            .sign(key, hashes.SHA256())
        )
        _write(ca.cert, ca.key, certificate, key)

    @staticmethod
    def issue(
        ca: CertificateAuthority, out: Credentials, common_name: str, services: Sequence[str], expired: bool
    ) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        start, end = (
            (EXPIRED_FROM, EXPIRED_UNTIL)
            if expired
            else (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))
        )
        names: list[x509.GeneralName] = [
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.DNSName("localhost"),
            *(x509.UniformResourceIdentifier(f"vyked://{service}") for service in services),
        ]
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write(out.cert, out.key, certificate, key)


def _key_usage(*, ca: bool) -> object:
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _write(cert_path: Path, key_path: Path, certificate: object, key: object) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    assert isinstance(certificate, x509.Certificate) and isinstance(key, ec.EllipticCurvePrivateKey)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)


class _OpenSSLCA:
    """``openssl req`` for keys, requests and the CA; ``openssl ca`` to sign (it takes explicit
    dates, which ``openssl x509 -req`` of OpenSSL 3.0 does not)."""

    @staticmethod
    def create(ca: CertificateAuthority) -> None:
        database = ca.directory / "db"
        database.mkdir(exist_ok=True)
        (database / "index.txt").write_text("")
        (ca.directory / "ca.cnf").write_text(
            "[ca]\ndefault_ca = ca_default\n"
            "[ca_default]\n"
            f"database = {database / 'index.txt'}\nnew_certs_dir = {database}\n"
            "rand_serial = yes\ndefault_md = sha256\npolicy = policy_any\n"
            "unique_subject = no\nemail_in_dn = no\ncopy_extensions = none\n"
            "[policy_any]\ncommonName = supplied\n"
        )
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", ca.key, "-out", ca.cert, "-subj", f"/CN={ca.name}",
            "-days", "2",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,digitalSignature,keyCertSign,cRLSign",
        )  # fmt: skip

    @staticmethod
    def issue(
        ca: CertificateAuthority, out: Credentials, common_name: str, services: Sequence[str], expired: bool
    ) -> None:
        request = out.cert.with_suffix(".csr")
        _openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", out.key, "-out", request, "-subj", f"/CN={common_name}",
        )  # fmt: skip
        alt_names = ["IP:127.0.0.1", "DNS:localhost", *(f"URI:vyked://{service}" for service in services)]
        extensions = out.cert.with_suffix(".ext")
        extensions.write_text(
            f"subjectAltName={','.join(alt_names)}\n"
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
        )
        now = datetime.datetime.now(datetime.UTC)
        start, end = (
            (EXPIRED_FROM, EXPIRED_UNTIL)
            if expired
            else (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))
        )
        _openssl(
            "ca", "-batch", "-config", ca.directory / "ca.cnf", "-cert", ca.cert, "-keyfile", ca.key,
            "-in", request, "-out", out.cert, "-notext", "-extfile", extensions,
            "-startdate", _asn1(start), "-enddate", _asn1(end),
        )  # fmt: skip
        out.key.chmod(0o600)


def _asn1(when: datetime.datetime) -> str:
    return when.astimezone(datetime.UTC).strftime("%Y%m%d%H%M%SZ")


def _openssl(*args: object) -> None:
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))} failed:\n{result.stderr}")
