"""Loading the Erlang cookie. The value is a secret: no message here ever contains it."""

from __future__ import annotations

import os
import re
from pathlib import Path

from beamfleet.runtime.erlang_dist.errors import DistError


class CookieFileError(DistError):
    """The cookie file is missing, unreadable or empty."""


def default_cookie_file() -> Path:
    """``$BEAMFLEET_COOKIE_FILE`` when set, else ``~/.erlang.cookie``."""
    env = os.environ.get("BEAMFLEET_COOKIE_FILE")
    return Path(env) if env else Path.home() / ".erlang.cookie"


# A cookie is an atom (at most 255 characters); fewer than 16 is guessable. Only cookies
# beamfleet is asked to install are held to this: reading one to connect accepts what
# the nodes already use.
STRONG_COOKIE = re.compile(r"[\x21-\x7e]{16,255}")
_DEFAULT_HINT = "pass --cookie-file or set BEAMFLEET_COOKIE_FILE"


def read_cookie_file(
    path: str | os.PathLike[str],
    *,
    private: bool = False,
    strong: bool = False,
    hint: str = _DEFAULT_HINT,
) -> str:
    """Read a cookie from ``path`` (a 0400 file or a Docker secret), trailing newline removed.

    Args:
        path: the file (``~`` is expanded).
        private: also refuse a file that other users can read (group/other permission bits).
        strong: also require 16-255 printable ASCII characters without spaces.
        hint: what to do when the file does not exist (the option or setting naming it).

    Example::

        cookie = read_cookie_file("/run/secrets/erlang_cookie")
        cookie = read_cookie_file("~/.config/app.cookie", private=True, strong=True)

    Raises:
        CookieFileError: the file is missing, unreadable, empty, not one line of text, or
            breaks ``private``/``strong`` (the message names the file, never its content).
    """
    p = Path(path).expanduser()
    try:
        raw = p.read_bytes()
        mode = p.stat().st_mode
    except FileNotFoundError as exc:
        raise CookieFileError(f"cookie file {p} does not exist; {hint}") from exc
    except OSError as exc:
        raise CookieFileError(f"cannot read cookie file {p}: {exc.strerror}") from exc
    if private and mode & 0o077:
        raise CookieFileError(
            f"cookie file {p} is readable by other users: chmod 600 it (a cookie is a secret)"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CookieFileError(f"cookie file {p} is not UTF-8 text") from exc
    cookie = text.rstrip("\r\n")
    if not cookie.strip():
        raise CookieFileError(f"cookie file {p} is empty")
    if "\n" in cookie or "\r" in cookie:
        raise CookieFileError(f"cookie file {p} has more than one line")
    if strong and not STRONG_COOKIE.fullmatch(cookie):
        raise CookieFileError(
            f"cookie file {p}: the cookie must be 16-255 printable ASCII characters without "
            "spaces"
        )
    return cookie
