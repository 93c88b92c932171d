"""One docker CLI runner for the controller's image builds and the lab, with their errors."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from beamfleet.controller.deploys.images import ImageBuildError, _docker
from beamfleet.controller.docker_cli import (
    DockerFailedError,
    DockerNotInstalledError,
    DockerTimeoutError,
    context_hash,
    docker_stdout,
    run_docker,
)
from beamfleet_lab.docker import docker
from beamfleet_lab.errors import DockerCommandError, DockerUnavailableError
from beamfleet_lab.images import host_image_tag, lab_assets_dir

# A stand-in `docker`: its first argument says how to behave.
FAKE_DOCKER = """#!/bin/sh
case $1 in
  ok) cat; echo " out" ;;
  fail) echo "line 1" >&2; echo "Error: no such image" >&2; exit 1 ;;
  down) echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock." >&2; exit 1 ;;
  slow) exec sleep 5 ;;
  stream) head -c 300000 /dev/zero; echo "a warning" >&2 ;;
  stream-fail) printf 'partial'; echo "Error: no such container" >&2; exit 1 ;;
esac
"""


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = tmp_path / "docker"
    exe.write_text(FAKE_DOCKER)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")


@pytest.mark.usefixtures("fake_docker")
def test_runner_outcomes() -> None:
    assert run_docker("ok", input_bytes=b"in").stdout == b"in out\n"
    assert run_docker("fail", check=False).returncode == 1
    with pytest.raises(DockerFailedError) as info:
        run_docker("fail", "x")
    assert info.value.stderr == "line 1\nError: no such image"
    assert info.value.tail(1) == "Error: no such image" and not info.value.engine_down
    with pytest.raises(DockerTimeoutError, match="timed out"):
        run_docker("slow", timeout=0.2)


@pytest.mark.usefixtures("fake_docker")
def test_streamed_output() -> None:
    # Read in part: the rest is drained, so docker is not cut off (its exit stays 0).
    with docker_stdout("stream") as stream:
        assert stream.read(10) == bytes(10)
    failing = docker_stdout("stream-fail")
    with pytest.raises(DockerFailedError, match="no such container"), failing as stream:
        assert stream.read() == b"partial"
    # A reader failing on the cut stream of a failed docker: docker's message is the error.
    failing = docker_stdout("stream-fail")
    with pytest.raises(DockerFailedError, match="no such container") as info, failing:
        raise ValueError("truncated archive")
    assert isinstance(info.value.__cause__, ValueError)
    # The deadline covers the reading: the drain of a docker that never ends is cut.
    slow = docker_stdout("slow", timeout=0.2)
    with pytest.raises(DockerTimeoutError, match="timed out"), slow:
        pass
    # An error while reading is the caller's; docker is killed rather than waited for.
    started = time.monotonic()
    with pytest.raises(KeyError), docker_stdout("slow"):
        raise KeyError("reader failed")
    assert time.monotonic() - started < 4


def test_no_docker_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DockerNotInstalledError):
        run_docker("ps")
    with pytest.raises(DockerUnavailableError, match=r"install docker\.io"):
        docker("ps")
    with pytest.raises(ImageBuildError, match="app_image"):
        _docker("ps")


@pytest.mark.usefixtures("fake_docker")
def test_each_caller_keeps_its_errors() -> None:
    with pytest.raises(DockerCommandError, match="no such image"):
        docker("fail")
    with pytest.raises(DockerUnavailableError, match="start dockerd"):
        docker("down")
    with pytest.raises(DockerCommandError, match="timed out"):
        docker("slow", timeout=0.2)
    assert _docker("ok") == " out\n"
    with pytest.raises(ImageBuildError, match="docker fail failed: line 1 / Error: no such image"):
        _docker("fail")


def test_lab_host_image_tag_is_the_context_hash() -> None:
    root = lab_assets_dir()
    files = {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}
    assert host_image_tag() == f"beamfleet-lab-host:{context_hash(files)}"
    assert len(context_hash(files)) == 12
