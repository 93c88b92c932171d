"""Refusing secret files that other users can read (the cookie, a TLS private key).

``erl`` refuses a ``~/.erlang.cookie`` that group or other users can read; beamfleet
holds every secret file it is given to the same rule, with one message that names the
file, its mode and the ``chmod`` that fixes it (never the content).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from beamfleet.runtime.erlang_dist.errors import DistError


def require_owner_only(
    path: str | os.PathLike[str], *, what: str, secret: str, error: type[DistError]
) -> None:
    """Raise ``error`` when group or other users may read ``path``.

    A missing or unreadable file passes: the caller's reader says precisely which.

    Args:
        path: the file (``~`` is expanded).
        what: what the file is, e.g. ``"cookie file"`` or ``"TLS key file"``.
        secret: what others could read, e.g. ``"the cookie (a secret)"``.
        error: the exception class to raise, called with the message.

    Example::

        require_owner_only("/run/secrets/cookie", what="cookie file",
                           secret="the cookie (a secret)", error=CookieFileError)
    """
    p = Path(path).expanduser()
    try:
        mode = stat.S_IMODE(p.stat().st_mode)
    except OSError:
        return
    if mode & 0o077:
        raise error(
            f"{what} {p} has mode {mode:04o}: group or other users can read {secret}; "
            f"make it private with: chmod 400 {p}"
        )
