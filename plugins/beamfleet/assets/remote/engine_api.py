"""Docker Engine API client that beamfleet's operations run on a host with its own python3.

Shipped as the text of ``python3 -c`` (see ``beamfleet.controller.operations.engine_api``): it is
static and holds no secret; every request body arrives on standard input, so join tokens
and service specs never appear in a process argument list. Standard library only and no
syntax newer than Python 3.7, so it runs on any host's python3.

Verbs (argv after the script):
  request METHOD PATH     send stdin (may be empty) as the JSON body; exit 0 on a 2xx answer,
                          else print Docker's message and exit 1
  get PATH                print the JSON answer of a GET (exit 1 and Docker's message on an
                          error answer)
  apply-service           stdin is a ServiceSpec: create the service, or update it at its
                          current version; secrets given by SecretName get their IDs looked up
  wait-rollout NAME SECS  after an update, wait for the rolling update to end: exit 0 when it
                          completed (or none was started), 1 when it was rolled back, paused,
                          or still going at the deadline
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import time
import urllib.parse
from datetime import datetime, timezone
from typing import Any

DOCKER_SOCKET = "/var/run/docker.sock"


class _UnixConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(DOCKER_SOCKET)


def call(
    method: str, path: str, body: bytes | None = None, timeout: float = 120
) -> tuple[int, Any]:
    """One Engine API request; returns (HTTP status, decoded JSON answer or None)."""
    conn = _UnixConnection("localhost", timeout=timeout)
    conn.request(method, path, body, {"Content-Type": "application/json"})
    answer = conn.getresponse()
    text = answer.read().decode(errors="replace")
    try:
        return answer.status, (json.loads(text) if text.strip() else None)
    except ValueError:
        return answer.status, text


def _message(answer: Any) -> Any:
    return answer.get("message", answer) if isinstance(answer, dict) else answer


def request(method: str, path: str) -> None:
    status, answer = call(method, path, sys.stdin.buffer.read() or None)
    if status >= 300:
        sys.exit(f"Docker Engine API {method} {path}: {status} {_message(answer)}")


def get(path: str) -> None:
    status, answer = call("GET", path, timeout=60)
    if status >= 300:
        sys.exit(f"Docker Engine API GET {path}: {status} {_message(answer)}")
    print(json.dumps(answer))


def apply_service() -> None:
    spec = json.load(sys.stdin)
    for ref in spec["TaskTemplate"]["ContainerSpec"].get("Secrets") or []:
        query = urllib.parse.quote(json.dumps({"name": [ref["SecretName"]]}))
        status, found = call("GET", "/secrets?filters=" + query, timeout=60)
        if status >= 300:
            sys.exit(f"Docker Engine API GET /secrets: {status} {_message(found)}")
        match = [s for s in found or [] if s["Spec"]["Name"] == ref["SecretName"]]
        if not match:
            sys.exit(f"secret {ref['SecretName']} does not exist (create it first)")
        ref["SecretID"] = match[0]["ID"]
    body = json.dumps(spec).encode()
    status, current = call("GET", "/services/" + urllib.parse.quote(spec["Name"]), timeout=60)
    if status == 404:
        status, answer = call("POST", "/services/create", body, timeout=60)
    elif status >= 300:  # e.g. 503: this engine is not a swarm manager
        sys.exit(f"Docker Engine API GET /services/{spec['Name']}: {status} {_message(current)}")
    else:
        path = f"/services/{current['ID']}/update?version={current['Version']['Index']}"
        status, answer = call("POST", path, body, timeout=60)
    if status >= 300:
        sys.exit(f"Docker Engine API: {status} {_message(answer)}")
    for warning in (answer or {}).get("Warnings") or []:
        # Registry-less clusters load images on each host; that warning is expected there.
        if "could not be accessed on a registry" not in warning:
            print(warning)


_ENDED_BADLY = ("paused", "rollback_started", "rollback_paused", "rollback_completed")


def _stamp(text: str) -> datetime:
    # Docker prints nanoseconds; fromisoformat takes at most microseconds.
    head, _, frac = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "." + (frac + "000000")[:6] + "+00:00")


def wait_rollout(name: str, timeout: float) -> None:
    # timezone.utc, not datetime.UTC: hosts may have a python3 older than 3.11.
    start = datetime.now(timezone.utc).replace(microsecond=0)  # noqa: UP017
    begun = time.monotonic()
    deadline = begun + timeout
    state, message = "none", ""
    while time.monotonic() < deadline:
        code, service = call("GET", "/services/" + urllib.parse.quote(name), timeout=30)
        if code >= 300:
            sys.exit(f"Docker Engine API GET /services/{name}: {code} {_message(service)}")
        status = service.get("UpdateStatus") or {}
        fresh = bool(status.get("StartedAt")) and _stamp(status["StartedAt"]) >= start
        state, message = status.get("State", "none"), status.get("Message", "")
        if fresh and state == "completed":
            return
        if fresh and state in (
            "paused",
            "rollback_started",
            "rollback_paused",
            "rollback_completed",
        ):
            sys.exit(f"update of {name} ended {state}: {message}")
        if not fresh and time.monotonic() > begun + 10:
            return  # no rolling update was started (e.g. only the replica count changed)
        time.sleep(1)
    sys.exit(f"update of {name} still {state} after {timeout:g} s: {message}")


def main(argv: list[str]) -> None:
    verb, args = (argv[0], argv[1:]) if argv else ("", [])
    if verb == "request" and len(args) == 2:
        request(args[0], args[1])
    elif verb == "get" and len(args) == 1:
        get(args[0])
    elif verb == "apply-service" and not args:
        apply_service()
    elif verb == "wait-rollout" and len(args) == 2:
        wait_rollout(args[0], float(args[1]))
    else:
        sys.exit(
            "usage: request METHOD PATH | get PATH | apply-service | wait-rollout NAME SECONDS"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
