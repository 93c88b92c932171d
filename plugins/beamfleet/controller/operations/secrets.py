"""Docker secrets that never show: created from stdin, or generated on the manager.

A Docker secret cannot be changed, so beamfleet gives each value its own *versioned*
name (``demo_cookie.v1``, ``.v2``...) and labels it with a salted hash of its content
(``LABEL_CONTENT_HASH`` and ``LABEL_CONTENT_SALT`` in
:mod:`~beamfleet.controller.facts.secrets`): a deploy sees whether a given value is already
stored (:func:`holds_value`) without reading any secret back (the engine never returns
one), while the labels, which anyone with access to the swarm's API reads, give no plain
hash of the value to look up or to test guesses against cheaply:

* a value given by the user: ``pbkdf2-sha256:<rounds>:<hash>`` (PBKDF2-HMAC-SHA256 with
  a random salt and :data:`PBKDF2_ROUNDS` rounds: a guess costs that many hashes);
* a value generated on the manager (192 random bits, nothing to guess):
  ``salted-sha256:<SHA-256 of salt + value>``, which its shell computes with sha256sum;
* ``sha256:<SHA-256 of the value>``: the unsalted label of earlier versions, still
  recognised, so an unchanged cookie does not roll the services.

The value never appears in a process argument list (``ps``), in pyinfra's output or
``--json``, or in a file: a value given by the user reaches ``docker secret create -`` on
its standard input over the SSH channel; a generated one is made from ``/dev/urandom`` by
the manager's shell, in a shell variable, and piped the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets as random_source
import shlex
from collections.abc import Generator, Mapping

from pyinfra.api.command import FunctionCommand, StringCommand
from pyinfra.api.exceptions import OperationValueError
from pyinfra.api.hiddenvalue import HiddenValue
from pyinfra.api.host import Host
from pyinfra.api.operation import operation
from pyinfra.api.state import State
from pyinfra.context import host

from beamfleet.controller.facts.secrets import (
    LABEL_CONTENT_HASH,
    LABEL_CONTENT_SALT,
    SwarmSecrets,
)
from beamfleet.controller.operations.engine_api import run_with_secret_stdin
from beamfleet.controller.remote_scripts import script_command

# Docker's rule for secret names (letters, digits, `_`, `-`, `.`; 1-64 chars).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
GENERATED_BYTES = 24  # 192 bits, printed as 48 hex characters (valid in any cookie)


PBKDF2_ROUNDS = 200_000  # a tenth of a second on the controller, per value and run
MAX_PBKDF2_ROUNDS = 10 * PBKDF2_ROUNDS
SALT_BYTES = 16
_PBKDF2 = "pbkdf2-sha256"
_SALTED = "salted-sha256"
_LEGACY = "sha256"


def pbkdf2_hash(value: str, salt: str, rounds: int = PBKDF2_ROUNDS) -> str:
    """The content-hash label of a value given by the user, for ``salt`` (hex)."""
    digest = hashlib.pbkdf2_hmac("sha256", value.encode(), bytes.fromhex(salt), rounds)
    return f"{_PBKDF2}:{rounds}:{digest.hex()[:32]}"


def salted_hash(value: str, salt: str) -> str:
    """The content-hash label ``assets/remote/generate_secret.sh`` gives a generated value:
    the SHA-256 of the salt's hex digits followed by the value."""
    return f"{_SALTED}:" + hashlib.sha256((salt + value).encode()).hexdigest()[:32]


def content_labels(value: str, salt: str | None = None) -> dict[str, str]:
    """The content-hash and salt labels for ``value`` (a new random salt unless given).

    Example: ``content_labels("cookie-value-0123456789")`` is
    ``{"io.beamfleet.content-hash": "pbkdf2-sha256:200000:...", "io.beamfleet.content-salt": ...}``.
    """
    salt = salt or random_source.token_hex(SALT_BYTES)
    return {LABEL_CONTENT_HASH: pbkdf2_hash(value, salt), LABEL_CONTENT_SALT: salt}


def holds_value(labels: Mapping[str, str], value: str) -> bool:
    """Whether the secret with ``labels`` holds ``value``, from its labels alone.

    False when the labels say nothing (a secret beamfleet did not make): then the value is
    taken as different, and stored as a new version.
    """
    label = str(labels.get(LABEL_CONTENT_HASH) or "")
    salt = str(labels.get(LABEL_CONTENT_SALT) or "")
    scheme, _, rest = label.partition(":")
    expected: str | None = None
    try:
        if scheme == _PBKDF2 and salt:
            rounds = int(rest.split(":", 1)[0])
            if not 0 < rounds <= MAX_PBKDF2_ROUNDS:  # a label is no reason to hash forever
                return False
            expected = pbkdf2_hash(value, salt, rounds)
        elif scheme == _SALTED and salt:
            expected = salted_hash(value, salt)
        elif scheme == _LEGACY:
            expected = f"{_LEGACY}:" + hashlib.sha256(value.encode()).hexdigest()[: len(rest)]
    except ValueError:  # a label that is no number or no hex: not ours
        return False
    return expected is not None and bool(rest) and hmac.compare_digest(expected, label)


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
        "generate_secret.sh",
        secret,
        str(GENERATED_BYTES),
        LABEL_CONTENT_HASH,
        LABEL_CONTENT_SALT,
        *pairs,
    )


def _create_from_stdin(
    state: State, host: Host, *, secret: str, value: HiddenValue, labels: dict[str, str]
) -> bool:
    """Execution-time half of :func:`secret` with a value: feed it on stdin."""
    plain = value.unmask()
    args = [*_label_args({**labels, **content_labels(plain)}), secret, "-"]
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
    + labels: more labels (the content-hash and salt labels are always added)

    An existing secret of that name is left alone (secrets are immutable: give a new
    value a new versioned name). To see whether a value is already stored, ask
    :func:`holds_value` with the labels of
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
