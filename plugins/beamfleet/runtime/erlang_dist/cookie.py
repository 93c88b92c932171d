"""Loading the Erlang cookie. The value is a secret: no message here ever contains it."""

from __future__ import annotations

import os
from pathlib import Path

from beamfleet.runtime.erlang_dist.errors import DistError


class CookieFileError(DistError):
    """The cookie file is missing, unreadable or empty."""


def default_cookie_file() -> Path:
    """``$BEAMFLEET_COOKIE_FILE`` when set, else ``~/.erlang.cookie``."""
    env = os.environ.get("BEAMFLEET_COOKIE_FILE")
    return Path(env) if env else Path.home() / ".erlang.cookie"


def read_cookie_file(path: str | os.PathLike[str]) -> str:
    """Read a cookie from ``path`` (a 0400 file or a Docker secret), trailing newline removed.

    Example::

        cookie = read_cookie_file("/run/secrets/erlang_cookie")

    Raises:
        CookieFileError: the file is missing, unreadable, empty, or not one line of text
            (the message names the file, never its content).
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError as exc:
        raise CookieFileError(f"cookie file {p} does not exist; pass --cookie-file or set "
                              f"BEAMFLEET_COOKIE_FILE") from exc
    except OSError as exc:
        raise CookieFileError(f"cannot read cookie file {p}: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CookieFileError(f"cookie file {p} is not UTF-8 text") from exc
    cookie = text.rstrip("\r\n")
    if not cookie.strip():
        raise CookieFileError(f"cookie file {p} is empty")
    if "\n" in cookie or "\r" in cookie:
        raise CookieFileError(f"cookie file {p} has more than one line")
    return cookie
