"""Address providers other than the local interfaces (``auto``): metadata APIs, env, hostname.

An *address provider* is where ``--provider`` takes the node's address from.

Each metadata provider is one documented HTTP GET (AWS first PUTs for an IMDSv2 token).
Base URLs are overridable, one variable per provider, also honoured by the sh shim:

=============  ====================================  ==================================
provider       default base URL (override variable)  request
=============  ====================================  ==================================
rancher        http://rancher-metadata               GET /latest/self/container/primary_ip
               (BEAMFLEET_METADATA_URL_RANCHER)
aws            http://169.254.169.254                PUT /latest/api/token
               (BEAMFLEET_METADATA_URL_AWS)          (X-aws-ec2-metadata-token-ttl-seconds),
                                                     GET /latest/meta-data/local-ipv4
                                                     (X-aws-ec2-metadata-token)
gcp            http://metadata.google.internal       GET /computeMetadata/v1/instance/
               (BEAMFLEET_METADATA_URL_GCP)          network-interfaces/0/ip
                                                     (Metadata-Flavor: Google)
azure          http://169.254.169.254                GET /metadata/instance/network/interface/
               (BEAMFLEET_METADATA_URL_AZURE)        0/ipv4/ipAddress/0/privateIpAddress
                                                     ?api-version=2021-02-01&format=text
                                                     (Metadata: true)
digitalocean   http://169.254.169.254                GET /metadata/v1/interfaces/private/0/
               (BEAMFLEET_METADATA_URL_DIGITALOCEAN) ipv4/address
openstack      http://169.254.169.254                GET /latest/meta-data/local-ipv4
               (BEAMFLEET_METADATA_URL_OPENSTACK)    (the EC2-compatible API: meta_data.json
                                                     carries no address)
=============  ====================================  ==================================

Every call has a short timeout (``BEAMFLEET_METADATA_TIMEOUT``, seconds, default 2) and a
few attempts (``BEAMFLEET_METADATA_ATTEMPTS``, default 3) with a short backoff, retrying
only what can be transient: no connection, timeouts, HTTP 429 and 5xx. A 4xx is final
(a missing header will not fix itself). Errors name the provider and the URL.

Non-HTTP providers: ``k8s`` reads ``POD_IP`` (set it from the downward API,
``fieldRef: status.podIP``), ``env:VAR`` reads any variable, ``hostname`` is the FQDN
(the canonical name of the host name, as ``hostname -f`` prints it; the plain host
name when it does not resolve).
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field

from beamfleet.runtime.naming.errors import InvalidInputError, ProviderError

AZURE_API_VERSION = "2021-02-01"
AWS_TOKEN_TTL = "60"


@dataclass(frozen=True)
class MetadataProvider:
    """One provider: where it lives, what to GET, with which headers."""

    name: str
    default_base: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    aws_token: bool = False  # IMDSv2: PUT /latest/api/token first

    @property
    def env_var(self) -> str:
        return f"BEAMFLEET_METADATA_URL_{self.name.upper()}"

    def base_url(self, environ: Mapping[str, str]) -> str:
        return (environ.get(self.env_var) or self.default_base).rstrip("/")


METADATA_PROVIDERS: dict[str, MetadataProvider] = {
    p.name: p
    for p in (
        MetadataProvider("rancher", "http://rancher-metadata", "/latest/self/container/primary_ip"),
        MetadataProvider(
            "aws", "http://169.254.169.254", "/latest/meta-data/local-ipv4", aws_token=True
        ),
        MetadataProvider(
            "gcp",
            "http://metadata.google.internal",
            "/computeMetadata/v1/instance/network-interfaces/0/ip",
            {"Metadata-Flavor": "Google"},
        ),
        MetadataProvider(
            "azure",
            "http://169.254.169.254",
            "/metadata/instance/network/interface/0/ipv4/ipAddress/0/"
            f"privateIpAddress?api-version={AZURE_API_VERSION}&format=text",
            {"Metadata": "true"},
        ),
        MetadataProvider(
            "digitalocean",
            "http://169.254.169.254",
            "/metadata/v1/interfaces/private/0/ipv4/address",
        ),
        MetadataProvider("openstack", "http://169.254.169.254", "/latest/meta-data/local-ipv4"),
    )
}

PROVIDER_CHOICES = ("auto", *METADATA_PROVIDERS, "k8s", "hostname", "env:VAR")


def check_provider(provider: str) -> str:
    """Validate ``--provider`` before anything is looked up."""
    if provider in ("auto", "k8s", "hostname") or provider in METADATA_PROVIDERS:
        return provider
    if provider.startswith("env:"):
        var = provider[4:]
        if (
            var
            and (var[0].isalpha() or var[0] == "_")
            and all(c.isalnum() or c == "_" for c in var)
            and var.isascii()
        ):
            return provider
        raise InvalidInputError(f"invalid --provider '{provider}': env:VAR needs a variable name")
    raise InvalidInputError(
        f"unknown --provider '{provider}'; expected one of: {', '.join(PROVIDER_CHOICES)}"
    )


@dataclass(frozen=True)
class HttpSettings:
    timeout: float = 2.0
    attempts: int = 3
    backoff: float = 0.2

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> HttpSettings:
        try:
            timeout = float(environ.get("BEAMFLEET_METADATA_TIMEOUT") or 2)
            attempts = int(environ.get("BEAMFLEET_METADATA_ATTEMPTS") or 3)
        except ValueError as exc:
            raise InvalidInputError(
                f"BEAMFLEET_METADATA_TIMEOUT/ATTEMPTS must be numbers: {exc}"
            ) from exc
        if timeout <= 0 or not 1 <= attempts <= 10:
            raise InvalidInputError(
                "BEAMFLEET_METADATA_TIMEOUT must be > 0 and BEAMFLEET_METADATA_ATTEMPTS 1..10"
            )
        return cls(timeout=timeout, attempts=attempts)


def _request(
    provider: str, method: str, url: str, headers: Mapping[str, str], http: HttpSettings
) -> str:
    last = ""
    for attempt in range(http.attempts):
        if attempt:
            time.sleep(http.backoff * attempt)  # backoff between real attempts, not a test wait
        request = urllib.request.Request(url, method=method, headers=dict(headers))
        try:
            with urllib.request.urlopen(request, timeout=http.timeout) as response:
                return str(response.read().decode("utf-8", "replace")).strip()
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
            if exc.code != 429 and exc.code < 500:
                raise ProviderError(f"{provider} metadata: {method} {url} answered {last}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            last = f"not reachable ({reason})"
    raise ProviderError(
        f"{provider} metadata: {method} {url} failed after {http.attempts} attempts: {last}; "
        f"is this running on {provider}? (set {METADATA_PROVIDERS[provider].env_var} to override "
        "the endpoint)"
    )


def fetch_metadata_address(
    name: str, environ: Mapping[str, str], http: HttpSettings | None = None
) -> str:
    """The address a metadata provider reports for this instance/container."""
    provider = METADATA_PROVIDERS[name]
    settings = http or HttpSettings.from_env(environ)
    base = provider.base_url(environ)
    headers = dict(provider.headers)
    if provider.aws_token:
        token = _request(
            name,
            "PUT",
            f"{base}/latest/api/token",
            {"X-aws-ec2-metadata-token-ttl-seconds": AWS_TOKEN_TTL},
            settings,
        )
        headers["X-aws-ec2-metadata-token"] = token
    value = _request(name, "GET", base + provider.path, headers, settings)
    if not value:
        raise ProviderError(f"{name} metadata: {base + provider.path} answered an empty address")
    return value


def fqdn() -> str:
    """The canonical name of this host's name (like ``hostname -f``), else the name."""
    name = socket.gethostname()
    try:
        info = socket.getaddrinfo(name, None, 0, socket.SOCK_STREAM, 0, socket.AI_CANONNAME)
    except OSError:
        return name
    canon = info[0][3] if info else ""
    return canon or name


def provider_host(provider: str, environ: Mapping[str, str]) -> str:
    """The host part from a provider other than ``auto`` (an address or a name, unchecked)."""
    if provider in METADATA_PROVIDERS:
        return fetch_metadata_address(provider, environ)
    if provider == "k8s":
        value = environ.get("POD_IP", "").strip()
        if not value:
            raise ProviderError(
                "k8s: POD_IP is not set; add to the container spec: env: - name: POD_IP, "
                "valueFrom: fieldRef: fieldPath: status.podIP"
            )
        return value
    if provider == "hostname":
        return fqdn()
    if provider.startswith("env:"):
        var = provider[4:]
        value = environ.get(var, "").strip()
        if not value:
            raise ProviderError(f"env:{var}: the variable {var} is not set or empty")
        return value
    raise InvalidInputError(f"unknown --provider '{provider}'")
