"""The package's layout holds: what runs where, what ships where, what the linter sees.

* ``beamfleet.runtime`` (onto hosts and into the agent image) imports nothing of the
  controller side, the lab, pyinfra or paramiko: checked on the source (every import
  statement, also those inside functions) and by importing every runtime module in a
  fresh interpreter;
* the controller side never imports the development tools (``beamfleet_lab``);
* the wheel users install carries neither the lab nor the emulators;
* the agent image's build context is the runtime package, whole;
* ``ruff check`` reads every Python file of the repository (a package named like a build
  directory would silently drop out of it).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from beamfleet.controller.deploys import images

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "plugins" / "beamfleet"
RUNTIME = PACKAGE / "runtime"
CONTROLLER = PACKAGE / "controller"

# What the runtime may import besides the standard library and itself: the agent image
# installs exactly these from Debian (python3-click, python3-dnspython).
RUNTIME_THIRD_PARTY = {"click", "dns"}
NEVER_IN_RUNTIME = ("beamfleet.controller", "beamfleet_lab", "pyinfra", "paramiko", "gevent")


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name an ``import`` or ``from ... import`` in ``path`` names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from beamfleet import controller` names a module through its parent
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def runtime_files() -> list[Path]:
    top = [PACKAGE / "__init__.py", PACKAGE / "__main__.py"]
    return top + sorted(RUNTIME.rglob("*.py"))


def test_the_tree_has_a_runtime_and_a_controller_side() -> None:
    assert len(list(RUNTIME.rglob("*.py"))) > 20
    assert len(list(CONTROLLER.rglob("*.py"))) > 10


@pytest.mark.parametrize("path", runtime_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_runtime_module_imports_no_controller_lab_or_pyinfra(path: Path) -> None:
    names = imported_modules(path)
    bad = sorted(n for n in names if n.startswith(NEVER_IN_RUNTIME))
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: the runtime must not"
    third_party = {
        n.split(".")[0]
        for n in names
        if n.split(".")[0] not in sys.stdlib_module_names and n.split(".")[0] != "beamfleet"
    }
    assert third_party <= RUNTIME_THIRD_PARTY, (
        f"{path.relative_to(ROOT)} imports {sorted(third_party - RUNTIME_THIRD_PARTY)}, "
        "which the agent image does not have"
    )


def test_importing_the_whole_runtime_loads_no_controller_module() -> None:
    modules = [
        ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)
        for p in sorted(RUNTIME.rglob("*.py"))
    ]
    modules = [m.removesuffix(".__init__") for m in modules]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if m.startswith({NEVER_IN_RUNTIME!r}))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "", f"importing the runtime loaded: {out.stdout.strip()}"


@pytest.mark.parametrize(
    "path", sorted(CONTROLLER.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_controller_never_imports_the_development_tools(path: Path) -> None:
    bad = sorted(n for n in imported_modules(path) if n.startswith("beamfleet_lab"))
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: the lab is a development tool"


def test_agent_image_context_is_the_runtime_package_whole() -> None:
    context = images.agent_context()
    shipped = {name for name in context if name.startswith("beamfleet/")}
    expected = {
        "beamfleet/" + p.relative_to(PACKAGE).as_posix()
        for p in RUNTIME.rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert expected <= shipped
    assert not {n for n in shipped if n.startswith("beamfleet/controller")}
    assert {"Dockerfile", "beamfleet-agent-launcher"} <= set(context)


def test_wheel_ships_runtime_and_controller_but_no_lab_or_emulators(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("beamfleet-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "beamfleet/runtime/erlang_dist/connection.py" in names
    assert "beamfleet/controller/deploys/cluster.py" in names
    assert "beamfleet/assets/beamfleet-nodename" in names
    leaked = [n for n in names if "beamfleet_lab" in n or "emulators" in n or "/lab/" in n]
    assert not leaked, f"the wheel carries development tools: {leaked[:5]}"


def test_ruff_checks_every_python_file_of_the_repository() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--show-files"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    ).stdout
    seen = {
        Path(line.strip()).resolve().relative_to(ROOT).as_posix()
        for line in listed.splitlines()
        if line.strip().endswith(".py")
    }
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    missing = sorted(set(tracked) - seen)
    assert tracked and not missing, f"ruff does not check: {missing}"
