"""The ``docker`` CLI of the outer engine, with the lab's errors and advice.

Commands run through :func:`beamfleet.controller.docker_cli.run_docker` (the runner the
controller builds images with); this module adds the lab's error classes and the
helpers the lab needs (inspect, list by label).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from typing import Any

from beamfleet.controller.docker_cli import (
    DockerCliError,
    DockerFailedError,
    DockerNotInstalledError,
    run_docker,
)
from beamfleet_lab.errors import DockerCommandError, DockerUnavailableError

# A `docker` call the lab makes must never hang forever (a wedged engine, a slow build).
DEFAULT_TIMEOUT = 300.0


def docker(
    *args: str,
    input_bytes: bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``docker ARGS...`` and return the finished process.

    Raises DockerUnavailableError when there is no docker client or engine, and
    DockerCommandError (with docker's own message) when ``check`` is true and the command
    fails or times out.
    """
    try:
        return run_docker(*args, input_bytes=input_bytes, timeout=timeout, check=check)
    except DockerNotInstalledError as exc:
        raise DockerUnavailableError(
            "no `docker` client on PATH: install docker.io (bash scripts/setup.sh does)"
        ) from exc
    except DockerFailedError as exc:
        if exc.engine_down:
            raise DockerUnavailableError(
                "the Docker engine does not answer: start dockerd (bash scripts/setup.sh does)"
            ) from exc
        raise DockerCommandError(str(exc)) from exc
    except DockerCliError as exc:
        raise DockerCommandError(str(exc)) from exc


def docker_out(*args: str, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Run ``docker ARGS...`` and return its stripped standard output."""
    return docker(*args, timeout=timeout).stdout.decode().strip()


def image_exists(ref: str) -> bool:
    """Whether the outer engine has the image ``ref`` locally."""
    return docker("image", "inspect", ref, check=False).returncode == 0


def inspect_json(kind: str, names: Sequence[str]) -> list[dict[str, Any]]:
    """``docker KIND inspect NAMES`` parsed; missing objects are simply absent."""
    if not names:
        return []
    proc = docker(kind, "inspect", *names, check=False)
    text = proc.stdout.decode().strip()
    if not text:
        return []
    data: list[dict[str, Any]] = json.loads(text)
    return data


def ids_with_label(kind: str, label: str) -> list[str]:
    """IDs of the containers, networks or volumes carrying ``label`` (``key`` or ``key=value``)."""
    args = [kind, "ls", "--filter", f"label={label}"]
    if kind == "container":
        args += ["-a", "-q"]
    else:
        args += ["--format", "{{.Name}}" if kind == "volume" else "{{.ID}}"]
    return [line for line in docker_out(*args).splitlines() if line]
