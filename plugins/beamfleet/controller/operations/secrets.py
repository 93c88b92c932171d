"""Docker secrets that never show: created from stdin, or generated on the manager.

A Docker secret cannot be changed, so beamfleet gives each value its own *versioned*
name (``demo_cookie.v1``, ``.v2``...) and labels it with a hash of its content
(``LABEL_CONTENT_HASH`` in :mod:`~beamfleet.controller.facts.secrets`): a deploy sees
whether a given value
is already stored without reading any secret back (the engine never returns one).

The value never appears in a process argument list (``ps``), in pyinfra's output or
``--json``, or in a file: a value given by the user reaches ``docker secret create -`` on
its standard input over the SSH channel; a generated one is made from ``/dev/urandom`` by
the manager's shell, in a shell variable, and piped the same way.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Generator, Mapping

from pyinfra.api.command import FunctionCommand, StringCommand
from pyinfra.api.exceptions import OperationValueError
from pyinfra.api.hiddenvalue import HiddenValue
from pyinfra.api.host import Host
from pyinfra.api.operation import operation
from pyinfra.api.state import State
from pyinfra.context import host

from beamfleet.controller.facts.secrets import LABEL_CONTENT_HASH, SwarmSecrets
from beamfleet.controller.operations.engine_api import run_with_secret_stdin
from beamfleet.controller.remote_scripts import script_command

# Docker's rule for secret names (letters, digits, `_`, `-`, `.`; 1-64 chars).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
GENERATED_BYTES = 24  # 192 bits, printed as 48 hex characters (valid in any cookie)


def content_hash(value: str) -> str:
    """The content-hash label of ``value``: ``sha256:`` + 16 hex digits of its SHA-256."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16]


def _label_args(labels: Mapping[str, str]) -> list[str]:
    args: list[str] = []
    for key, val in sorted(labels.items()):
        args += ["--label", f"{key}={val}"]
    return args


def generate_secret_command(secret: str, labels: Mapping[str, str]) -> StringCommand:
    """Create ``secret`` from :data:`GENERATED_BYTES` random bytes made on the host
    (``assets/remote/generate_secret.sh``: the value only ever travels on stdin)."""
    pairs = [f"{key}={val}" for key, val in sorted(labels.items())]
    return script_command(
        "generate_secret.sh", secret, str(GENERATED_BYTES), LABEL_CONTENT_HASH, *pairs
    )


def _create_from_stdin(
    state: State, host: Host, *, secret: str, value: HiddenValue, labels: dict[str, str]
) -> bool:
    """Execution-time half of :func:`secret` with a value: feed it on stdin."""
    plain = value.unmask()
    args = [*_label_args({**labels, LABEL_CONTENT_HASH: content_hash(plain)}), secret, "-"]
    command = StringCommand("docker secret create", *[shlex.quote(a) for a in args], "> /dev/null")
    return run_with_secret_stdin(host, command, plain)


@operation()
def secret(
    secret: str,
    value: HiddenValue | None = None,
    labels: Mapping[str, str] | None = None,
) -> Generator[StringCommand | FunctionCommand, None, None]:
    """
    Create the swarm secret ``secret`` unless it exists (run on a manager).

    + secret: the secret's (versioned) name, e.g. ``demo_cookie.v1``
    + value: the value, wrapped in pyinfra's ``HiddenValue``; ``None`` generates 192
      random bits (48 hex characters) on the manager itself, so the value never
      leaves it
    + labels: more labels (the content-hash label is always added)

    An existing secret of that name is left alone (secrets are immutable: give a new
    value a new versioned name). To see whether a value is already stored, compare
    :func:`content_hash` with the ``io.beamfleet.content-hash`` label of
    :class:`~beamfleet.controller.facts.secrets.SwarmSecrets`.

    **Example:**

    .. code:: python

        secrets.secret(secret="demo_cookie.v1", labels={"io.beamfleet.cookie": "demo"})
    """
    if not _NAME.match(secret):
        raise OperationValueError(
            f"secret name {secret!r}: use 1-64 letters, digits, `_`, `-` or `.`"
        )
    if value is not None and not isinstance(value, HiddenValue):
        raise OperationValueError("give the secret value as a pyinfra HiddenValue")
    if secret in host.get_fact(SwarmSecrets):
        host.noop(f"secret {secret} exists")
        return
    extra = dict(labels or {})
    if value is not None:
        yield FunctionCommand(
            _create_from_stdin, (), {"secret": secret, "value": value, "labels": extra}
        )
        return
    yield generate_secret_command(secret, extra)


@operation()
def absent(secret: str) -> Generator[StringCommand, None, None]:
    """
    Remove the swarm secret ``secret`` (run on a manager). Docker refuses while a
    service still uses it; that is reported as an error.

    + secret: the secret's name

    **Example:**

    .. code:: python

        secrets.absent(secret="demo_cookie.v1")
    """
    if secret not in host.get_fact(SwarmSecrets):
        host.noop(f"secret {secret} is absent")
        return
    yield StringCommand("docker", "secret", "rm", shlex.quote(secret), "> /dev/null")
