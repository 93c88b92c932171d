"""Swarm services from a declarative spec: created, updated only when it changed.

:func:`service` takes the whole desired ``ServiceSpec`` (the Docker Engine API's JSON
shape), hashes it, and stores the hash in the service's :data:`LABEL_SPEC_HASH` label.
When the running service carries the same hash, nothing is sent: an unchanged deploy
restarts nothing and reports no change. When the spec changed, the engine gets the new
spec as one update, so it only rolls the tasks if the task template changed (scaling a
replicated service adds or removes tasks and leaves the others alone), following the
service's ``UpdateConfig`` (and ``RollbackConfig`` on failure).

The spec reaches the Engine API on ``/var/run/docker.sock`` on the manager through
standard input; secrets are named in the spec (``SecretName``) and resolved to their IDs
on the manager when the operation runs, so a secret created earlier in the same run works.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shlex
from collections.abc import Generator, Mapping
from typing import Any

from pyinfra.api.command import StringCommand
from pyinfra.api.exceptions import OperationValueError
from pyinfra.api.operation import operation
from pyinfra.context import host

from beamfleet.facts.services import SwarmServices

LABEL_SPEC_HASH = "io.beamfleet.spec-hash"

# Run by the manager's python3 with the desired spec on stdin. Static text, no secret.
# Creates the service, or updates it at its current version, resolving secret names.
APPLY_SERVICE = r"""
import http.client, json, socket, sys, urllib.parse
class C(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect('/var/run/docker.sock')
def call(method, path, body=None):
    c = C('localhost', timeout=60)
    c.request(method, path, None if body is None else json.dumps(body),
              {'Content-Type': 'application/json'})
    r = c.getresponse()
    data = r.read().decode(errors='replace')
    return r.status, (json.loads(data) if data.strip() else None)
spec = json.load(sys.stdin)
for ref in spec['TaskTemplate']['ContainerSpec'].get('Secrets') or []:
    q = urllib.parse.quote(json.dumps({'name': [ref['SecretName']]}))
    status, found = call('GET', '/secrets?filters=' + q)
    match = [s for s in found or [] if s['Spec']['Name'] == ref['SecretName']]
    if not match:
        sys.exit('secret %s does not exist (create it first)' % ref['SecretName'])
    ref['SecretID'] = match[0]['ID']
status, current = call('GET', '/services/' + urllib.parse.quote(spec['Name']))
if status == 404:
    status, answer = call('POST', '/services/create', spec)
else:
    path = '/services/%s/update?version=%d' % (current['ID'], current['Version']['Index'])
    status, answer = call('POST', path, spec)
if status >= 300:
    sys.exit('Docker Engine API: %s %s' % (status, (answer or {}).get('message', answer)))
for warning in (answer or {}).get('Warnings') or []:
    if 'could not be accessed on a registry' not in warning:
        print(warning)
"""


# Run by the manager's python3 after an update: waits for the rolling update to end.
# argv: SERVICE TIMEOUT. Exit 0 when it completed (or there was nothing to roll), 1 with
# Docker's message when it was rolled back or paused, or at the timeout.
WAIT_ROLLOUT = r"""
import json, subprocess, sys, time
from datetime import datetime, timezone
name, timeout = sys.argv[1], float(sys.argv[2])
start = datetime.now(timezone.utc)
deadline = time.monotonic() + timeout
def stamp(text):
    text = text.rstrip('Z')
    head, _, frac = text.partition('.')
    return datetime.fromisoformat(head + '.' + (frac + '000000')[:6] + '+00:00')
state, message = 'none', ''
while time.monotonic() < deadline:
    out = subprocess.run(['docker', 'service', 'inspect', name], capture_output=True, text=True)
    status = (json.loads(out.stdout or '[{}]')[0].get('UpdateStatus') or {})
    fresh = status.get('StartedAt') and stamp(status['StartedAt']) >= start.replace(microsecond=0)
    state, message = status.get('State', 'none'), status.get('Message', '')
    if fresh and state == 'completed':
        sys.exit(0)
    if fresh and state in ('paused', 'rollback_started', 'rollback_paused', 'rollback_completed'):
        sys.exit('update of %s ended %s: %s' % (name, state, message))
    if not fresh and time.monotonic() > deadline - timeout + 10:
        sys.exit(0)  # no rolling update was started (e.g. only the replica count changed)
    time.sleep(1)
sys.exit('update of %s still %s after %d s: %s' % (name, state, timeout, message))
"""


def spec_hash(spec: Mapping[str, Any]) -> str:
    """A stable hash of a service spec (without its own hash label)."""
    clean = copy.deepcopy(dict(spec))
    labels = dict(clean.get("Labels") or {})
    labels.pop(LABEL_SPEC_HASH, None)
    clean["Labels"] = labels
    encoded = json.dumps(clean, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def with_spec_hash(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` with its :data:`LABEL_SPEC_HASH` label set."""
    result = copy.deepcopy(dict(spec))
    result["Labels"] = {**(result.get("Labels") or {}), LABEL_SPEC_HASH: spec_hash(spec)}
    return result


def _validate(spec: Mapping[str, Any]) -> None:
    name = spec.get("Name")
    if not isinstance(name, str) or not name:
        raise OperationValueError("the service spec needs a `Name`")
    template = spec.get("TaskTemplate") or {}
    container = template.get("ContainerSpec") or {}
    if not container.get("Image"):
        raise OperationValueError(f"service {name}: TaskTemplate.ContainerSpec.Image is empty")
    for ref in container.get("Secrets") or []:
        if "SecretName" not in ref or "File" not in ref:
            raise OperationValueError(
                f"service {name}: each secret needs `SecretName` and `File` (target name, "
                "UID, GID, Mode)"
            )
    mode = spec.get("Mode") or {}
    if len(mode) != 1 or next(iter(mode)) not in ("Replicated", "Global"):
        raise OperationValueError(f"service {name}: Mode must be Replicated or Global")


@operation()
def service(
    spec: Mapping[str, Any], wait_rollout: float | None = None
) -> Generator[StringCommand, None, None]:
    """
    Ensure a swarm service runs with exactly ``spec`` (run on a manager).

    + spec: the Docker Engine API ``ServiceSpec`` (``Name``, ``Labels``, ``TaskTemplate``,
      ``Mode``, ``UpdateConfig``, ``RollbackConfig``, ``EndpointSpec``...); secrets are
      given by ``SecretName`` (their IDs are looked up on the manager)
    + wait_rollout: after an update, wait up to this many seconds for the rolling update
      to complete, and fail if it was rolled back or paused (default: do not wait)

    No change when the service's spec-hash label matches ``spec``. Otherwise one create
    or update call; whether tasks restart is then the engine's rule (only when the task
    template changed, rolling per ``UpdateConfig``).

    **Example:**

    .. code:: python

        services.service(spec={
            "Name": "web",
            "TaskTemplate": {"ContainerSpec": {"Image": "nginx:1.27"}},
            "Mode": {"Replicated": {"Replicas": 2}},
        })
    """
    _validate(spec)
    desired = with_spec_hash(spec)
    name = str(spec["Name"])
    current = host.get_fact(SwarmServices).get(name)
    if current is not None:
        have = ((current.get("Spec") or {}).get("Labels") or {}).get(LABEL_SPEC_HASH)
        if have == desired["Labels"][LABEL_SPEC_HASH]:
            host.noop(f"service {name} is up to date")
            return
    body = json.dumps(desired, sort_keys=True)
    # The spec travels on stdin (a heredoc), not as an argument: it can be long, and the
    # command line stays readable in pyinfra's output.
    yield StringCommand(
        "python3", "-c", shlex.quote(APPLY_SERVICE), f"<<'BEAMFLEET_SPEC'\n{body}\nBEAMFLEET_SPEC"
    )
    if wait_rollout is not None and current is not None:
        yield StringCommand(
            "python3", "-c", shlex.quote(WAIT_ROLLOUT), shlex.quote(name), f"{wait_rollout:g}"
        )


@operation()
def absent(service_name: str) -> Generator[StringCommand, None, None]:
    """
    Remove a swarm service (run on a manager).

    + service_name: the service's name

    **Example:**

    .. code:: python

        services.absent(service_name="web")
    """
    if service_name not in host.get_fact(SwarmServices):
        host.noop(f"service {service_name} is absent")
        return
    yield StringCommand("docker", "service", "rm", shlex.quote(service_name), "> /dev/null")
