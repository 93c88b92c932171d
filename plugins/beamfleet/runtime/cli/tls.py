"""``--tls-cert``, ``--tls-key``, ``--tls-ca``: connecting to nodes that use TLS distribution.

Shared by every command that connects (``beamfleet node ...``, ``beamfleet mesh``). The
options name files only (certificate material never goes on the command line); the key
file must be readable by its owner only, like the cookie file. All three or none.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from beamfleet.runtime.erlang_dist import TlsConfig

F = TypeVar("F", bound=Callable[..., Any])

_FILE = click.Path(dir_okay=False, path_type=Path)
_OPTIONS = (
    ("--tls-cert", "BEAMFLEET_TLS_CERT", "Our client certificate (PEM), for nodes using TLS "
     "distribution (-proto_dist inet_tls)."),
    ("--tls-key", "BEAMFLEET_TLS_KEY", "Its private key (PEM, unencrypted, chmod 400)."),
    ("--tls-ca", "BEAMFLEET_TLS_CA", "The CA certificate(s) the nodes' certificates are "
     "signed by (PEM)."),
)  # fmt: skip


def tls_options(func: F) -> F:
    """Adds ``--tls-cert``, ``--tls-key`` and ``--tls-ca`` (env ``BEAMFLEET_TLS_*``)."""
    for flag, env, text in reversed(_OPTIONS):
        func = click.option(
            flag, type=_FILE, default=None, envvar=env, show_envvar=True, help=text
        )(func)
    return func


def tls_config(cert: Path | None, key: Path | None, ca: Path | None) -> TlsConfig | None:
    """The TLS files given, or None for plain TCP; all three or none.

    Raises:
        click.UsageError: one or two of the three options are given.
    """
    given = {"--tls-cert": cert, "--tls-key": key, "--tls-ca": ca}
    if not any(given.values()):
        return None
    if cert is None or key is None or ca is None:
        missing = ", ".join(flag for flag, value in given.items() if value is None)
        raise click.UsageError(
            f"TLS distribution needs --tls-cert, --tls-key and --tls-ca "
            f"together; missing: {missing}"
        )
    return TlsConfig.from_paths(cert, key, ca)
