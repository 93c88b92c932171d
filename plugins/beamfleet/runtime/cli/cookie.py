"""The cookie file of a command that connects (``beamfleet agent``, ``beamfleet node``).

A cookie grants full control of every node that uses it, so these commands refuse a file
that group or other users can read, as ``erl`` refuses such a ``~/.erlang.cookie``. A
Docker secret mounted with mode 0400 for the reading user passes; a file written by
hand usually needs ``chmod 400``.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from beamfleet.runtime.constants import EPMD_PORT
from beamfleet.runtime.erlang_dist import CookieFileError, read_cookie_file
from beamfleet.runtime.erlang_dist.private_file import require_owner_only

# The options of every command that connects to nodes (`beamfleet node ...`, `mesh`).
cookie_file_option = click.option(
    "--cookie-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File holding the cookie [default: $BEAMFLEET_COOKIE_FILE, then ~/.erlang.cookie].",
)
epmd_port_option = click.option(
    "--epmd-port",
    type=click.IntRange(1, 65535),
    default=lambda: int(os.environ.get("ERL_EPMD_PORT", str(EPMD_PORT))),
    show_default=f"$ERL_EPMD_PORT or {EPMD_PORT}",
    help="EPMD port on the nodes' hosts.",
)


def read_private_cookie(path: str | os.PathLike[str]) -> str:
    """The cookie in ``path``, which only its owner may read.

    Example::

        cookie = read_private_cookie("/run/secrets/erlang_cookie")

    Raises:
        CookieFileError: the file is readable by group/others (the message names the file,
            its mode and the ``chmod`` that fixes it), or it is missing, unreadable or
            not one line of text. Never the cookie itself.
    """
    p = Path(path).expanduser()
    require_owner_only(p, what="cookie file", secret="the cookie (a secret)", error=CookieFileError)
    return read_cookie_file(p, private=True)
