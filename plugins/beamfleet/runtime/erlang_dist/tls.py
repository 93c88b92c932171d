"""TLS for the distribution connection (nodes started with ``-proto_dist inet_tls``).

A node using TLS distribution registers its TLS listen port in EPMD as usual; a client
connects to it, runs a TLS handshake, and then the ordinary distribution handshake
(cookie and all) inside the TLS session. The nodes' ``-ssl_dist_optfile`` usually says
``{verify, verify_peer}, {fail_if_no_peer_cert, true}``, so we present a certificate
of our own, signed by a CA the nodes trust.

What the client verifies: the node's certificate chain up to the CA file we are given
(only that CA: the system's trust store is not loaded), TLS 1.3 only. Host names are not
checked: nodes are addressed by IP address, and whether a deploy's node certificates
carry the nodes' addresses as IP subjectAltNames is up to whoever issues them (one
certificate shared by every node of a service is common, and OTP nodes accept each
other on the CA chain alone unless told otherwise). Trust is therefore "signed by the
cluster CA", the same boundary as the cookie; the distribution handshake then still
checks that the node answers with the name asked for. A caller that does issue per-node
certificates with IP SANs can pass its own :class:`ssl.SSLContext` with
``check_hostname = True``.

Example::

    tls = TlsConfig.from_paths("/run/secrets/dist.pem", "/run/secrets/dist.key",
                               "/run/secrets/ca.pem")
    async with connect("app@10.0.1.3", cookie, tls=tls) as node:
        ...
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from beamfleet.runtime.erlang_dist.errors import DistError
from beamfleet.runtime.erlang_dist.private_file import require_owner_only

OPTIONS_HINT = "give --tls-cert, --tls-key and --tls-ca (tls= in the API)"


class TlsConfigError(DistError, ValueError):
    """A certificate, key or CA file cannot be used (the message names the file)."""


class _EncryptedKey(Exception):
    """The key file asks for a password (we never prompt)."""


def _refuse_password() -> bytes:
    raise _EncryptedKey


@dataclass(frozen=True)
class TlsConfig:
    """Our certificate and key, and the CA that signs the nodes' certificates.

    Args:
        certfile: our client certificate (PEM; may be followed by its intermediates).
        keyfile: its private key (PEM, unencrypted, readable by its owner only).
        cafile: the CA certificate(s) the nodes' certificates must chain up to (PEM).
    """

    certfile: Path
    keyfile: Path
    cafile: Path

    @classmethod
    def from_paths(
        cls,
        certfile: str | os.PathLike[str],
        keyfile: str | os.PathLike[str],
        cafile: str | os.PathLike[str],
    ) -> TlsConfig:
        """A config from three paths (``~`` expanded)."""
        return cls(
            Path(certfile).expanduser(), Path(keyfile).expanduser(), Path(cafile).expanduser()
        )

    def client_context(self) -> ssl.SSLContext:
        """An SSL context for connecting to TLS distribution nodes.

        TLS 1.3 minimum; the node's certificate must chain up to ``cafile``
        (``CERT_REQUIRED``); we present ``certfile``; no host name check (see the module).

        Raises:
            TlsConfigError: a file is missing or unreadable, is not PEM of the expected
                kind, the key is encrypted or readable by other users, or does not match
                the certificate. The message names the file, never its content.
        """
        _check_pem(
            self.certfile,
            "TLS certificate file",
            b"-----BEGIN CERTIFICATE-----",
            "a PEM certificate",
        )
        require_owner_only(
            self.keyfile,
            what="TLS key file",
            secret="the private key (a secret)",
            error=TlsConfigError,
        )
        _check_pem(self.keyfile, "TLS key file", b"PRIVATE KEY-----", "a PEM private key")
        _check_pem(
            self.cafile, "TLS CA file", b"-----BEGIN CERTIFICATE-----", "PEM CA certificate(s)"
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.check_hostname = False  # CA chain only: see the module docstring
        context.verify_mode = ssl.CERT_REQUIRED
        try:
            context.load_verify_locations(cafile=self.cafile)
        except ssl.SSLError as exc:
            raise TlsConfigError(
                f"TLS CA file {self.cafile} cannot be loaded: {exc.reason or exc}"
            ) from exc
        try:
            context.load_cert_chain(self.certfile, self.keyfile, password=_refuse_password)
        except _EncryptedKey as exc:
            raise TlsConfigError(
                f"TLS key file {self.keyfile} is encrypted: give an unencrypted key "
                f"(readable by its owner only)"
            ) from exc
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                detail = "the key does not belong to the certificate"
            else:
                detail = str(exc.reason or exc)
            raise TlsConfigError(
                f"TLS certificate {self.certfile} with key {self.keyfile} cannot be "
                f"loaded: {detail}"
            ) from exc
        return context


def _check_pem(path: Path, what: str, marker: bytes, kind: str) -> None:
    """Raise TlsConfigError unless ``path`` is readable and holds ``marker``."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise TlsConfigError(f"{what} {path} does not exist; {OPTIONS_HINT}") from exc
    except OSError as exc:
        raise TlsConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    if marker not in data:
        raise TlsConfigError(f"{what} {path} does not hold {kind}")


def client_context(tls: TlsConfig | ssl.SSLContext) -> ssl.SSLContext:
    """``tls`` as a context: a :class:`TlsConfig` is loaded, a context passes unchanged."""
    return tls.client_context() if isinstance(tls, TlsConfig) else tls
