"""A thin, typed wrapper over the ``docker`` CLI of the outer engine.

The lab shells out to ``docker`` instead of speaking the Engine API itself: the CLI is
what the setup script installs, and its errors are what users know how to read.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

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

    Raises DockerUnavailableError when there is no docker client, and DockerCommandError
    (with docker's own message) when ``check`` is true and the command fails.
    """
    exe = shutil.which("docker")
    if exe is None:
        raise DockerUnavailableError(
            "no `docker` client on PATH: install docker.io (bash scripts/setup.sh does)"
        )
    try:
        proc = subprocess.run(
            [exe, *args],
            input=input_bytes,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise DockerCommandError(
            f"`docker {' '.join(args[:3])}` timed out after {timeout}s"
        ) from exc
    if check and proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip()
        if "Cannot connect to the Docker daemon" in message:
            raise DockerUnavailableError(
                "the Docker engine does not answer: start dockerd (bash scripts/setup.sh does)"
            )
        raise DockerCommandError(f"`docker {' '.join(args[:3])} ...` failed: {message}")
    return proc


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
