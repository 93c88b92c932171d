"""The runtime wheel the controller builds for hosts: reproducible, complete, runtime only."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from beamfleet.controller.runtime_wheel import (
    build_runtime_wheel,
    content_digest,
    runtime_digest,
    runtime_package_files,
)


def test_same_files_give_the_same_bytes(tmp_path: Path) -> None:
    first = build_runtime_wheel(tmp_path / "a")
    second = build_runtime_wheel(tmp_path / "b")
    assert first.name == second.name
    assert first.read_bytes() == second.read_bytes()
    assert runtime_digest(first) == content_digest()
    # already there: not rewritten
    mtime = first.stat().st_mtime_ns
    assert build_runtime_wheel(tmp_path / "a") == first
    assert first.stat().st_mtime_ns == mtime


def test_carries_the_runtime_and_the_shell_assets_but_no_controller(tmp_path: Path) -> None:
    wheel = build_runtime_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in zf.infolist()}
        record = next(n for n in names if n.endswith(".dist-info/RECORD"))
        recorded = {line.split(",")[0] for line in zf.read(record).decode().splitlines()}
    assert set(runtime_package_files()) <= names
    assert "beamfleet/runtime/discovery/agent.py" in names
    assert not [n for n in names if n.startswith(("beamfleet/controller", "beamfleet_lab"))]
    assert modes["beamfleet/assets/beamfleet-nodename"] == 0o755
    assert modes["beamfleet/assets/release/beamfleet-entrypoint"] == 0o755
    assert modes["beamfleet/runtime/mesh.py"] == 0o644
    assert recorded == names  # every file is in RECORD, RECORD itself included


def test_unpacked_it_runs_beamfleet_without_the_controller(tmp_path: Path) -> None:
    wheel = build_runtime_wheel(tmp_path)
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    env = {**os.environ, "PYTHONPATH": str(target)}
    probe = (
        "import importlib.util, beamfleet, beamfleet.runtime.cli.mesh;"
        "print(beamfleet.__file__);"
        "print(importlib.util.find_spec('beamfleet.controller'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out[0].startswith(str(target))
    assert out[1] == "None"
    help_text = subprocess.run(
        [sys.executable, "-m", "beamfleet", "mesh", "--help"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--nodes-file" in help_text
