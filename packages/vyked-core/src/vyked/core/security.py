"""What a vyked process proves and checks on its connections: the cluster secret and TLS.

:class:`Trust` is built once per host or registry by :meth:`Trust.configure`, from explicit
arguments first, then the environment, then nothing:

============================  ==============================================================
``secret=``                   ``VYKED_SECRET`` (the secret itself), or ``VYKED_SECRET_FILE``
                              (a file holding it; one trailing newline is ignored)
``tls_cert=``, ``tls_key=``   ``VYKED_TLS_CERT``, ``VYKED_TLS_KEY``: this process's certificate
                              chain and key (PEM); with them it serves TLS
``tls_ca=``                   ``VYKED_TLS_CA``: the CA that peers' certificates must chain to;
                              with it both sides verify each other (mutual TLS)
============================  ==============================================================

With nothing configured, connections are plaintext and unauthenticated, as before.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vyked.core.exceptions import ConfigurationError

SECRET_VARIABLE = "VYKED_SECRET"
SECRET_FILE_VARIABLE = "VYKED_SECRET_FILE"
TLS_CERT_VARIABLE = "VYKED_TLS_CERT"
TLS_KEY_VARIABLE = "VYKED_TLS_KEY"
TLS_CA_VARIABLE = "VYKED_TLS_CA"


@dataclass(frozen=True, slots=True)
class Trust:
    """The secret to prove, and the TLS contexts to serve and connect with."""

    secret: bytes | None = None
    server_ssl: ssl.SSLContext | None = None
    """Serves TLS (None: plaintext)."""
    client_ssl: ssl.SSLContext | None = None
    """Connects to TLS peers: verifies them against the configured CA and presents this
    process's certificate. None: the system's default verification."""

    @property
    def tls(self) -> bool:
        """Whether TLS is configured at all: then the registry is reached over TLS too."""
        return self.server_ssl is not None or self.client_ssl is not None

    def connect_context(self) -> ssl.SSLContext:
        """The context for connecting to a peer that serves TLS."""
        return self.client_ssl or _default_client_context()

    @classmethod
    def configure(
        cls,
        *,
        secret: str | bytes | None = None,
        secret_file: str | os.PathLike[str] | None = None,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        tls_ca: str | os.PathLike[str] | None = None,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Trust:
        """Explicit arguments first, then ``VYKED_*`` variables (see the module docstring).

        Raises :class:`~vyked.core.exceptions.ConfigurationError` naming the argument or
        variable when a file is missing or a certificate or key cannot be loaded.
        """
        env = os.environ if environ is None else environ
        resolved_secret = _secret(secret, secret_file, env)
        cert = _path(tls_cert, env, TLS_CERT_VARIABLE)
        key = _path(tls_key, env, TLS_KEY_VARIABLE)
        ca = _path(tls_ca, env, TLS_CA_VARIABLE)
        if (cert is None) != (key is None) and server_ssl is None:
            raise ConfigurationError(
                f"a TLS certificate needs its key and a key its certificate: set both {TLS_CERT_VARIABLE} "
                f"and {TLS_KEY_VARIABLE} (or tls_cert= and tls_key=)"
            )
        if server_ssl is None and cert is not None and key is not None:
            server_ssl = server_context(cert, key, ca)
        if client_ssl is None and (ca is not None or cert is not None):
            client_ssl = client_context(ca, cert, key)
        return cls(resolved_secret, server_ssl, client_ssl)


def server_context(cert: str, key: str, ca: str | None = None) -> ssl.SSLContext:
    """A context serving TLS with ``cert``/``key``; with ``ca``, clients must present a
    certificate signed by it (mutual TLS)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _load_chain(context, cert, key)
    if ca is not None:
        _load_ca(context, ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(ca: str | None = None, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """A context verifying servers against ``ca`` (else the system's CAs) and, with
    ``cert``/``key``, presenting this process's certificate."""
    context = _default_client_context()
    if ca is not None:
        _load_ca(context, ca)
    if cert is not None and key is not None:
        _load_chain(context, cert, key)
    return context


def _default_client_context() -> ssl.SSLContext:
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH)


def _load_chain(context: ssl.SSLContext, cert: str, key: str) -> None:
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load the TLS certificate {cert} with key {key}: {exc}") from exc


def _load_ca(context: ssl.SSLContext, ca: str) -> None:
    try:
        context.load_verify_locations(ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load the TLS CA {ca}: {exc}") from exc


def _path(explicit: str | os.PathLike[str] | None, env: Mapping[str, str], variable: str) -> str | None:
    value = os.fspath(explicit) if explicit is not None else env.get(variable) or None
    if value is not None and not Path(value).is_file():
        source = variable if explicit is None else "the argument"
        raise ConfigurationError(f"{source} names {value!r}, which is not a readable file")
    return value


def _secret(
    explicit: str | bytes | None, explicit_file: str | os.PathLike[str] | None, env: Mapping[str, str]
) -> bytes | None:
    if explicit is not None:
        return explicit.encode() if isinstance(explicit, str) else explicit
    if explicit_file is not None:
        return _read_secret(os.fspath(explicit_file), "the secret_file argument")
    if env.get(SECRET_VARIABLE):
        return env[SECRET_VARIABLE].encode()
    if env.get(SECRET_FILE_VARIABLE):
        return _read_secret(env[SECRET_FILE_VARIABLE], SECRET_FILE_VARIABLE)
    return None


def _read_secret(path: str, source: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{source} names {path!r}, which cannot be read: {exc.strerror}") from exc
    secret = data[:-1] if data.endswith(b"\n") else data
    if not secret:
        raise ConfigurationError(f"{source} names {path!r}, which is empty")
    return secret


IDENTITY_SCHEME = "vyked://"


def certificate_names(certificate: Mapping[str, Any] | None) -> set[str]:
    """The service names a peer certificate (``SSLSocket.getpeercert()``) vouches for: each SAN
    URI ``vyked://<Service>``, and the subject's common name."""
    if not certificate:
        return set()
    names = {
        value[len(IDENTITY_SCHEME) :]
        for kind, value in certificate.get("subjectAltName", ())
        if kind == "URI" and value.startswith(IDENTITY_SCHEME)
    }
    for rdn in certificate.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                names.add(value)
    return names
