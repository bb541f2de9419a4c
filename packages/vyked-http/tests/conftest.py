"""Fixtures for vyked-http's tests: services on real loopback sockets.

- ``serve``: start an HTTPService on 127.0.0.1 without a registry (its host is never started).
- ``http``: a plain aiohttp client session, to look at services from outside.
- ``tls``: a self-signed certificate for 127.0.0.1 and the SSL contexts that go with it; the
  certificate is its own CA. ``other_tls``: another one, which ``tls`` does not trust.

Tests that go through the registry use ``vyked_registry`` / ``vyked_host`` from
:mod:`vyked.core.pytest_plugin`, which skip when vyked-registry is not installed.
"""

from __future__ import annotations

import datetime
import importlib.util
import ipaddress
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest

from vyked.core.host import ServiceHost
from vyked.http import HTTPService

S = TypeVar("S", bound=HTTPService)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[S], Awaitable[S]]]:
    started: list[HTTPService] = []

    async def start(service: S) -> S:
        await service.start(ServiceHost())
        started.append(service)
        return service

    yield start
    for service in reversed(started):
        await service.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@dataclass
class TLSFiles:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return _self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def other_tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return _self_signed(tmp_path_factory.mktemp("other-tls"))


def _self_signed(directory: Path) -> TLSFiles:
    files = TLSFiles(directory / "cert.pem", directory / "key.pem")
    if importlib.util.find_spec("cryptography") is not None:
        _self_signed_with_cryptography(files)
    elif shutil.which("openssl"):
        _self_signed_with_openssl(files)
    else:
        pytest.skip("neither the cryptography package nor the openssl command is available")
    return files


def _self_signed_with_cryptography(files: TLSFiles) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        # what Python 3.13's VERIFY_X509_STRICT wants of a self-signed certificate
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def _self_signed_with_openssl(files: TLSFiles) -> None:
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(files.key), "-out", str(files.cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
