"""Text that becomes a line of a file root reads: a systemd unit, an environment file,
a Dockerfile.

Every such line is written from values that come from the inventory, an image or a
release; a newline (or any other control character) in one of them would start a line
of its own, a directive of the writer's choosing (``ExecStartPre=+...`` in a unit,
``RUN`` in a Dockerfile). The values are checked where they are read (the inventory's
key checks, the release and image inspections); the writers check again with
:func:`one_line`, so that no path around those checks can write such a line.

Example::

    one_line("demo", "the node's basename")          # "demo"
    one_line("app\\nExecStartPre=+id", "a name")      # raises UnsafeTextError
"""

from __future__ import annotations

import re
from typing import Final

from pyinfra.api.exceptions import PyinfraError

CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
# An environment variable's name, as POSIX shells and systemd's EnvironmentFile read it.
ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)


class UnsafeTextError(PyinfraError):
    """A value holds a control character where it would become a line of a file."""


def has_control_character(text: str) -> bool:
    """True when ``text`` holds a newline, tab, NUL or any other C0 control or DEL."""
    return CONTROL.search(text) is not None


def one_line(value: str, what: str) -> str:
    """``value`` when it has no control character, else raise :class:`UnsafeTextError`
    naming ``what`` it is."""
    if has_control_character(value):
        raise UnsafeTextError(
            f"{what} is {value!r}: it holds a control character (a newline?) and would "
            "become more than one line of a unit, environment file or Dockerfile"
        )
    return value


def env_name(name: str, what: str) -> str:
    """``name`` when it is an environment variable's name, else raise
    :class:`UnsafeTextError` naming ``what`` it is."""
    if not ENV_NAME.fullmatch(name):
        raise UnsafeTextError(
            f"{what}: {name!r} is not an environment variable's name (a letter or `_`, "
            "then letters, digits or `_`)"
        )
    return name
