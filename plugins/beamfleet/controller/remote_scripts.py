"""The scripts of ``assets/remote/``, as commands to run on a host.

A script is shipped the way :mod:`beamfleet.controller.operations.engine_api` ships its
Python client: as the text of ``sh -c``, followed by its own name (``$0``, for its usage
message) and its arguments, every word shell-quoted. Nothing is copied to the host, and a
script never gets a secret as an argument: secrets travel on standard input only.
"""

from __future__ import annotations

import shlex
from functools import cache
from importlib import resources

from pyinfra.api.command import StringCommand


@cache
def script_text(name: str) -> str:
    """The text of ``assets/remote/<name>`` (read once; also the Engine API client's)."""
    return resources.files("beamfleet").joinpath(f"assets/remote/{name}").read_text()


def script_shell(name: str, *args: str) -> str:
    """``sh -c <script> <name> ARGS...`` as one shell-quoted string (a fact's command).

    Example: ``script_shell("docker_read.sh", "service-tasks", "demo")``.
    """
    return shlex.join(["sh", "-c", script_text(name), name, *args])


def script_command(name: str, *args: str) -> StringCommand:
    """:func:`script_shell` as an operation's command.

    Example: ``script_command("load_image.sh", "/var/tmp/beamfleet-image-0123.tar")``.
    """
    return StringCommand(script_shell(name, *args))
