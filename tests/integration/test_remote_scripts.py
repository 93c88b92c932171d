"""The remote sh scripts (``assets/remote/*.sh``) run under dash, against a fake ``docker``.

Each test runs the command exactly as the fact or operation renders it (``sh -c <script>
<name> ARGS...``), with ``sh`` resolving to dash and ``docker`` to a fake written here that
records every call's argv and stdin and answers with canned output. So the tests see the
arguments each script hands to Docker, and that a secret going to Docker on stdin never
shows in any argv. What Docker itself answers is the lab's part (tests/lab).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from beamfleet.controller.facts.kernel import KernelSetting, KernelSettings, parse_kernel_settings
from beamfleet.controller.facts.secrets import (
    LABEL_CONTENT_HASH,
    LABEL_CONTENT_SALT,
    SwarmSecrets,
    parse_secrets,
)
from beamfleet.controller.facts.services import ServiceTasks, SwarmServices
from beamfleet.controller.facts.swarm import (
    SwarmJoinTokens,
    SwarmNetworks,
    SwarmNodes,
    parse_join_tokens,
)
from beamfleet.controller.operations.images import load_image_command
from beamfleet.controller.operations.secrets import (
    GENERATED_BYTES,
    generate_secret_command,
    holds_value,
)
from beamfleet.controller.operations.swarm import wait_node_down_command
from beamfleet.controller.remote_scripts import script_shell

DASH = shutil.which("dash")
pytestmark = pytest.mark.skipif(DASH is None, reason="dash is not installed (scripts/setup.sh)")

# The fake: answers are looked up by the argv joined with spaces (a key ending in `*`
# matches by prefix); a list of answers is used in turn (the last one repeats). Unknown
# calls print nothing and succeed.
FAKE_DOCKER = """\
import json, os, sys
argv = sys.argv[1:]
stdin = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
log = os.environ["FAKE_DOCKER_LOG"]
calls = [json.loads(line) for line in open(log)] if os.path.exists(log) else []
with open(log, "a") as f:
    f.write(json.dumps({"argv": argv, "stdin": stdin}) + "\\n")
table = json.load(open(os.environ["FAKE_DOCKER_ANSWERS"]))
key = " ".join(argv)
answers = table.get(key) or next(
    (v for k, v in table.items() if k.endswith("*") and key.startswith(k[:-1])), {}
)
if isinstance(answers, list):
    seen = sum(1 for c in calls if c["argv"] == argv)
    answers = answers[min(seen, len(answers) - 1)]
sys.stdout.write(answers.get("stdout", ""))
sys.exit(answers.get("rc", 0))
"""

IS_MANAGER = "info --format {{.Swarm.ControlAvailable}}"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    calls: list[dict[str, Any]]

    def argvs(self) -> list[list[str]]:
        return [call["argv"] for call in self.calls]


class FakeDocker:
    """A bin directory with ``sh`` -> dash and the fake ``docker``."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.bin.mkdir()
        docker = self.bin / "docker"
        docker.write_text(f"#!{sys.executable}\n{FAKE_DOCKER}")
        docker.chmod(0o755)
        assert DASH is not None
        (self.bin / "sh").symlink_to(DASH)
        self.log = root / "calls.jsonl"
        self.answers_file = root / "answers.json"

    def run(self, command: str, answers: dict[str, Any] | None = None) -> Result:
        self.answers_file.write_text(json.dumps(answers or {}))
        self.log.unlink(missing_ok=True)
        env = {
            **os.environ,
            "PATH": f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "FAKE_DOCKER_LOG": str(self.log),
            "FAKE_DOCKER_ANSWERS": str(self.answers_file),
        }
        assert DASH is not None
        proc = subprocess.run(
            [DASH, "-c", command],
            input="",
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )
        calls = (
            [json.loads(line) for line in self.log.read_text().splitlines()]
            if (self.log.exists())
            else []
        )
        return Result(proc.returncode, proc.stdout, proc.stderr, calls)


@pytest.fixture
def docker(tmp_path: Path) -> FakeDocker:
    return FakeDocker(tmp_path)


def manager(is_manager: bool = True) -> dict[str, Any]:
    return {IS_MANAGER: {"stdout": "true\n" if is_manager else "false\n"}}


# -- docker_read.sh: the facts' reads ------------------------------------------------------


def test_secrets_are_inspected_in_one_call_on_a_manager(docker: FakeDocker) -> None:
    inspected = [{"ID": "s1", "Spec": {"Name": "demo_cookie.v1", "Labels": {"a": "b"}}}]
    result = docker.run(
        SwarmSecrets().command(),
        {
            **manager(),
            "secret ls -q": {"stdout": "s1\ns2\n"},
            "secret inspect s1 s2": {"stdout": json.dumps(inspected)},
        },
    )
    assert result.returncode == 0, result.stderr
    assert result.argvs() == [
        IS_MANAGER.split(),
        ["secret", "ls", "-q"],
        ["secret", "inspect", "s1", "s2"],
    ]
    assert parse_secrets(json.loads(result.stdout))["demo_cookie.v1"]["Labels"] == {"a": "b"}


@pytest.mark.parametrize(
    ("command", "kind"),
    [(SwarmSecrets().command(), "secret"), (SwarmServices().command(), "service"),
     (SwarmNodes().command(), "node")],
)  # fmt: skip
def test_swarm_wide_reads_print_an_empty_list_off_a_manager(
    docker: FakeDocker, command: str, kind: str
) -> None:
    result = docker.run(command, manager(False))
    assert (result.returncode, result.stdout) == (0, "[]\n")
    assert result.argvs() == [IS_MANAGER.split()]  # nothing listed
    on_manager = docker.run(command, {**manager(), f"{kind} ls -q": {"stdout": ""}})
    assert (on_manager.returncode, on_manager.stdout) == (0, "[]\n")  # none: no inspect call
    assert on_manager.argvs()[-1] == [kind, "ls", "-q"]


def test_a_failed_listing_reads_as_none(docker: FakeDocker) -> None:
    # As the inline commands did: `ids=$(docker network ls ...)` failing meant "none".
    result = docker.run(
        SwarmNetworks().command(), {"network ls -q --filter driver=overlay": {"rc": 1}}
    )
    assert (result.returncode, result.stdout) == (0, "[]\n")


def test_overlay_networks_are_read_on_any_engine(docker: FakeDocker) -> None:
    result = docker.run(
        SwarmNetworks().command(),
        {
            "network ls -q --filter driver=overlay": {"stdout": "n1\n"},
            "network inspect n1": {"stdout": '[{"Name": "beam"}]'},
        },
    )
    assert result.returncode == 0, result.stderr
    assert IS_MANAGER.split() not in result.argvs()
    assert SwarmNetworks().process(result.stdout.splitlines()) == {"beam": {"Name": "beam"}}


def test_service_tasks_pass_the_service_name_as_one_argument(docker: FakeDocker) -> None:
    name = "odd name; $(exit 3) 'q'"
    result = docker.run(
        ServiceTasks().command(service=name),
        {
            **manager(),
            f"service ps -q --filter desired-state=running {name}": {"stdout": "t1 t2\n"},
            "inspect t1 t2": {"stdout": "[]"},
        },
    )
    assert result.returncode == 0, result.stderr
    assert result.argvs()[1:] == [
        ["service", "inspect", name],
        ["service", "ps", "-q", "--filter", "desired-state=running", name],
        ["inspect", "t1", "t2"],
    ]
    missing = docker.run(
        ServiceTasks().command(service="gone"), {**manager(), "service inspect gone": {"rc": 1}}
    )
    assert (missing.returncode, missing.stdout) == (0, "[]\n")
    assert ["service", "ps", "-q", "--filter", "desired-state=running", "gone"] not in (
        missing.argvs()
    )


def test_join_tokens_only_on_a_manager_and_only_on_stdout(docker: FakeDocker) -> None:
    worker, manager_token = "SWMTKN-1-abc-workersecret", "SWMTKN-1-abc-managersecret"
    result = docker.run(
        SwarmJoinTokens().command(),
        {
            **manager(),
            "swarm join-token -q worker": {"stdout": worker + "\n"},
            "swarm join-token -q manager": {"stdout": manager_token + "\n"},
        },
    )
    assert result.returncode == 0, result.stderr
    tokens = parse_join_tokens(result.stdout.splitlines())
    assert tokens is not None and tokens["manager"].unmask() == manager_token
    off = docker.run(SwarmJoinTokens().command(), manager(False))
    assert (off.returncode, off.stdout) == (0, "")
    failing = docker.run(
        SwarmJoinTokens().command(), {**manager(), "swarm join-token -q worker": {"rc": 1}}
    )
    assert failing.returncode == 1  # as `worker && manager` did: no manager token asked
    assert ["swarm", "join-token", "-q", "manager"] not in failing.argvs()


def test_an_unknown_verb_prints_the_usage(docker: FakeDocker) -> None:
    result = docker.run(script_shell("docker_read.sh", "volumes"))
    assert result.returncode == 2
    assert "usage: docker_read.sh" in result.stderr
    assert result.calls == []


# -- load_image.sh -------------------------------------------------------------------------


@pytest.mark.parametrize("rc", [0, 1])
def test_the_archive_is_loaded_then_removed_whatever_happened(
    docker: FakeDocker, tmp_path: Path, rc: int
) -> None:
    archive = tmp_path / "beamfleet image.tar"
    archive.write_bytes(b"tar")
    result = docker.run(
        load_image_command(str(archive)).get_raw_value(),
        {f"load -q -i {archive}": {"rc": rc, "stdout": "Loaded image: x\n"}},
    )
    assert result.returncode == rc
    assert result.argvs() == [["load", "-q", "-i", str(archive)]]
    assert result.stdout == ""  # docker's output is not shown
    assert not archive.exists()


# -- generate_secret.sh --------------------------------------------------------------------


def test_a_generated_secret_goes_to_docker_on_stdin_only(docker: FakeDocker) -> None:
    command = generate_secret_command("demo_cookie.v1", {"io.beamfleet.cookie": "demo"})
    result = docker.run(command.get_raw_value())
    assert result.returncode == 0, result.stderr
    (call,) = result.calls
    value = call["stdin"]
    assert len(value) == 2 * GENERATED_BYTES
    assert all(c in "0123456789abcdef" for c in value)
    argv = call["argv"]
    assert argv[:4] == ["secret", "create", "--label", "io.beamfleet.cookie=demo"]
    assert argv[-2:] == ["demo_cookie.v1", "-"]
    labels = dict(arg.split("=", 1) for arg in argv[5:-2:2])
    assert argv[4:-2:2] == ["--label", "--label"] and set(labels) == {
        LABEL_CONTENT_HASH,
        LABEL_CONTENT_SALT,
    }
    # salted: the label is no plain hash of the value, yet names it
    assert hashlib.sha256(value.encode()).hexdigest()[:16] not in labels[LABEL_CONTENT_HASH]
    assert holds_value(labels, value) and not holds_value(labels, value[::-1])
    assert not any(value in arg for arg in call["argv"])
    assert value not in result.stdout + result.stderr
    again = docker.run(command.get_raw_value())
    assert again.calls[0]["stdin"] != value  # generated afresh, never a fixed value


def test_a_failed_create_fails_the_script(docker: FakeDocker) -> None:
    command = generate_secret_command("x.v1", {})
    result = docker.run(command.get_raw_value(), {"secret create*": {"rc": 1}})
    assert result.returncode == 1
    assert [call["argv"][:2] for call in result.calls] == [["secret", "create"]]


# -- wait_node_down.sh ---------------------------------------------------------------------


def test_the_wait_stops_as_soon_as_the_node_is_down(docker: FakeDocker) -> None:
    inspect = "node inspect -f {{.Status.State}} abc123"
    result = docker.run(
        wait_node_down_command("abc123", 30).get_raw_value(),
        {inspect: [{"stdout": "ready\n"}, {"stdout": "down\n"}]},
    )
    assert result.returncode == 0, result.stderr
    assert result.argvs() == [inspect.split()] * 2


def test_the_wait_gives_up_after_its_tries_and_still_succeeds(docker: FakeDocker) -> None:
    inspect = "node inspect -f {{.Status.State}} abc123"
    result = docker.run(
        wait_node_down_command("abc123", 1).get_raw_value(), {inspect: {"stdout": "ready\n"}}
    )
    assert result.returncode == 0, result.stderr
    assert result.argvs() == [inspect.split()] * 2  # 1 s = 2 polls


# -- sysctl_read.sh ------------------------------------------------------------------------


def test_kernel_settings_are_read_with_their_access(docker: FakeDocker) -> None:
    keys = ("net.ipv4.neigh.default.gc_thresh3", "net.beamfleet.no_such_key")
    result = docker.run(KernelSettings().command(keys))
    assert result.returncode == 0, result.stderr
    parsed = parse_kernel_settings(result.stdout.splitlines())
    have = Path("/proc/sys/net/ipv4/neigh/default/gc_thresh3").read_text().strip()
    assert parsed["net.ipv4.neigh.default.gc_thresh3"].value == have
    assert parsed["net.beamfleet.no_such_key"] == KernelSetting(None, writable=False)
    assert result.calls == []  # no docker involved


def test_a_key_that_is_no_sysctl_key_is_refused(docker: FakeDocker) -> None:
    result = docker.run(KernelSettings().command(("../../etc/passwd",)))
    assert result.returncode == 2
    assert "not a sysctl key" in result.stderr
