"""The gated Swarm roll's decisions (beamfleet.controller.swarm_roll), without a swarm.

The lab tests run it on a real swarm (tests/lab/test_release_images.py); here: the step
spec, which tasks are stale, when a step is done, what the messages name, and that a
failed gate puts the previous spec back (a scripted host stands in for the manager).
"""

from __future__ import annotations

import json
import shlex
from types import SimpleNamespace
from typing import Any

import pytest
from paramiko import SSHException

from beamfleet.controller.swarm_roll import (
    HOLD_S,
    SECOND,
    MeshGate,
    Task,
    gated_roll_command,
    is_held,
    judge_step,
    node_label,
    rebalance_command,
    restore_spec,
    stale,
    step_spec,
    ungated_reason,
)
from beamfleet.runtime.constants import COOKIE_SECRET_TARGET

NETWORKS = {"netid0123456789": "beamfleet-demo"}
OLD = {
    "ContainerSpec": {"Image": "demo:1", "Env": ["A=1"]},
    "Networks": [{"Target": "beamfleet-demo"}],
}
NEW = {
    "ContainerSpec": {"Image": "demo:2", "Env": ["A=1"]},
    "Networks": [{"Target": "beamfleet-demo"}],
}
PACE = {"Parallelism": 1, "Delay": 2 * SECOND, "Order": "start-first", "FailureAction": "rollback"}


def spec(
    template: dict[str, Any], replicas: int = 3, secret: str = "demo_cookie.v1"
) -> dict[str, Any]:
    template = json.loads(json.dumps(template))
    template["ContainerSpec"]["Secrets"] = [
        {"SecretName": secret, "File": {"Name": COOKIE_SECRET_TARGET}}
    ]
    return {
        "Name": "demo",
        "TaskTemplate": template,
        "Mode": {"Replicated": {"Replicas": replicas}},
        "UpdateConfig": dict(PACE),
        "RollbackConfig": dict(PACE),
    }


def task(
    n: int, template: dict[str, Any], *, desired: str = "running", state: str = "running",
    index: int = 0, err: str = "",
) -> Task:  # fmt: skip
    live_template = json.loads(json.dumps(template))
    live_template["Networks"] = [{"Target": "netid0123456789"}]
    image = live_template["ContainerSpec"]["Image"]
    live_template["ContainerSpec"]["Image"] = image + "@sha256:" + "0" * 64  # pinned
    return Task(
        id=f"t{n}", slot=n, desired=desired, state=state, node_id=f"node{n}",
        address=f"10.234.0.{n}", error=err, message="", spec=live_template, index=index or n,
    )  # fmt: skip


def test_a_step_replaces_one_task_then_holds_with_a_delay_of_its_own() -> None:
    first, second = step_spec(spec(NEW), 1), step_spec(spec(NEW), 2)
    for s in (first, second):
        assert s["UpdateConfig"]["Parallelism"] == 1
        assert s["UpdateConfig"]["Order"] == "start-first"
        assert s["UpdateConfig"]["FailureAction"] == "pause"  # never Swarm's own rollback
        assert s["TaskTemplate"] == spec(NEW)["TaskTemplate"]
    assert first["UpdateConfig"]["Delay"] >= HOLD_S * SECOND
    assert first["UpdateConfig"]["Delay"] != second["UpdateConfig"]["Delay"]
    assert is_held(first) and not is_held(spec(NEW))


def test_a_failed_roll_restores_the_previous_template_at_the_inventorys_pace() -> None:
    interrupted = step_spec(spec(OLD), 4)  # an earlier roll stopped mid-way
    restored = restore_spec(interrupted, spec(NEW))
    assert restored["TaskTemplate"] == spec(OLD)["TaskTemplate"]
    assert restored["UpdateConfig"] == PACE and not is_held(restored)


def test_a_new_cookie_a_switch_to_tls_or_no_task_is_not_gated() -> None:
    assert ungated_reason(spec(NEW), spec(OLD)) is None
    assert "cookie" in (ungated_reason(spec(NEW, secret="demo_cookie.v2"), spec(OLD)) or "")
    assert "no task" in (ungated_reason(spec(NEW), spec(OLD, replicas=0)) or "")
    tls = spec(NEW)
    tls["TaskTemplate"]["ContainerSpec"]["Env"].append("BEAMFLEET_DIST_TLS_CERT=/run/x")
    tls["TaskTemplate"]["ContainerSpec"]["Secrets"].append(
        {"SecretName": "demo_dist_node.v1", "File": {"Name": "dist_node.pem"}}
    )
    assert "TCP and TLS" in (ungated_reason(tls, spec(OLD)) or "")
    # new certificates (same CA) roll gated: old and new nodes trust each other
    renewed = json.loads(json.dumps(tls))
    renewed["TaskTemplate"]["ContainerSpec"]["Secrets"][1]["SecretName"] = "demo_dist_node.v2"
    assert ungated_reason(renewed, tls) is None


def test_stale_tasks_are_the_live_ones_running_another_template() -> None:
    tasks = [
        task(1, NEW),
        task(2, OLD),
        task(3, OLD, desired="shutdown", state="shutdown"),
        task(4, OLD, state="starting"),
    ]
    assert [t.id for t in stale(tasks, NEW, NETWORKS)] == ["t2", "t4"]
    assert stale(tasks[:1], NEW, NETWORKS) == []  # the pinned digest is no drift


def test_a_step_is_done_only_when_the_new_task_runs_and_the_old_one_has_stopped() -> None:
    before = [task(1, OLD), task(2, OLD), task(3, OLD)]
    known = frozenset(t.id for t in before)
    waiting = judge_step(before, NEW, NETWORKS, stale_before=3, replicas=3, known=known)
    assert not waiting.done and "new version" in waiting.waiting_for

    starting = [*before, task(9, NEW, state="starting", index=20, err="")]
    step = judge_step(starting, NEW, NETWORKS, stale_before=3, replicas=3, known=known)
    assert not step.done

    swapped = [
        task(1, OLD, desired="shutdown", state="running"),  # start-first: still stopping
        task(2, OLD), task(3, OLD), task(9, NEW, index=20),
    ]  # fmt: skip
    step = judge_step(swapped, NEW, NETWORKS, stale_before=3, replicas=3, known=known)
    assert not step.done and "to stop" in step.waiting_for
    assert step.newest is not None and step.newest.id == "t9"

    swapped[0] = task(1, OLD, desired="shutdown", state="shutdown")
    step = judge_step(swapped, NEW, NETWORKS, stale_before=3, replicas=3, known=known)
    assert step.done and step.newest is not None and step.newest.id == "t9"


def test_a_task_that_does_not_start_is_named_with_its_error() -> None:
    tasks = [task(2, OLD), task(3, OLD), task(9, NEW, state="starting", err="exec format error")]
    step = judge_step(
        tasks, NEW, NETWORKS, stale_before=3, replicas=3, known=frozenset({"t2", "t3"})
    )
    assert not step.done and "exec format error" in step.waiting_for
    assert (
        node_label(step.newest, "demo", {"node9": "host2"}) == "demo@10.234.0.9 (slot 9 on host2)"
    )


class ScriptedManager:
    """Answers the roll's commands: a mesh that never completes after the first step."""

    def __init__(self) -> None:
        self.applied: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self.looks = 0

    def run_shell_command(self, command: Any, **kwargs: Any) -> tuple[bool, Any]:
        raw = command.get_raw_value()
        words = shlex.split(raw)
        self.lines.append(raw)
        out: Any = None
        if "apply-service" in words:
            self.applied.append(json.loads(kwargs["_stdin"]))
        elif "get" in words and words[-1].startswith("/tasks"):
            template = (self.applied[-1] if self.applied else spec(OLD))["TaskTemplate"]
            out = [
                {"ID": "t1", "Slot": 1, "DesiredState": "running", "Status": {"State": "running"},
                 "Spec": template, "Version": {"Index": 9 if self.applied else 1}},
                {"ID": "t2", "Slot": 2, "DesiredState": "running", "Status": {"State": "running"},
                 "Spec": spec(OLD)["TaskTemplate"], "Version": {"Index": 2}},
            ]  # fmt: skip
        elif "get" in words and words[-1] == "/nodes":
            out = [{"ID": "n1", "Description": {"Hostname": "host1"}}]
        elif "get" in words:
            out = {"UpdateStatus": {"State": "updating"}}
        elif "wait-rollout" in words:
            out = None
        elif "python3" in words:  # the gate
            self.looks += 1
            complete = self.looks == 1 or len(self.applied) > 1  # fine before, then broken
            problems = [] if complete else ["demo@10.234.0.1 could not be asked: nope"]
            out = {
                "complete": complete,
                "running": ["10.234.0.1", "10.234.0.2"],
                "problems": problems,
            }
        return True, SimpleNamespace(stdout_lines=[json.dumps(out)], stderr_lines=[])

    def log_styled(self, line: str, **kwargs: Any) -> None:
        self.lines.append(line)


def test_a_node_that_does_not_join_puts_the_previous_spec_back_and_fails() -> None:
    previous, desired = spec(OLD, replicas=2), spec(NEW, replicas=2)
    gate = MeshGate("demo", "demo", "beamfleet-demo", "demo-agent", "/run/secrets/c", timeout=1)
    command = gated_roll_command(desired, previous, gate, {})
    manager = ScriptedManager()
    assert command.function(None, manager, *command.args, **command.kwargs) is False
    assert [a["TaskTemplate"]["ContainerSpec"]["Image"] for a in manager.applied] == [
        "demo:2",  # the first step
        "demo:1",  # the previous version, back
    ]
    assert is_held(manager.applied[0]) and not is_held(manager.applied[1])
    said = "\n".join(manager.lines)
    assert "did not join the complete mesh within 1 s" in said
    assert "demo@10.234.0.1 could not be asked: nope" in said
    # specs travel on stdin only
    assert all("demo:2" not in line for line in manager.lines if line.startswith("python3"))


# What a gate's shell may print instead of its report (a login script, a wrapper, a
# daemon's message on stdout): longer than a message quotes.
GARBAGE = "Error response from daemon: rpc error: code = Unavailable desc = " + "x" * 400


class BrokenGate(ScriptedManager):
    """The scripted manager, whose gate answers ``answer`` (stdout lines, or an exception
    raised as the connection would) from the look after the first step on, ``times``
    times; every other look sees a complete mesh."""

    def __init__(self, answer: list[str] | Exception, *, times: int = 99, first: int = 2) -> None:
        super().__init__()
        self.answer, self.times, self.first = answer, times, first
        self.broken = 0

    def run_shell_command(self, command: Any, **kwargs: Any) -> tuple[bool, Any]:
        words = shlex.split(command.get_raw_value())
        is_gate = (
            words[0] == "python3"
            and "wait-rollout" not in words
            and not any(w in words for w in ("get", "apply-service"))
        )
        if is_gate and self.looks + 1 >= self.first and self.broken < self.times:
            self.looks += 1
            self.broken += 1
            if isinstance(self.answer, Exception):
                raise self.answer
            return True, SimpleNamespace(stdout_lines=list(self.answer), stderr_lines=[])
        if is_gate:
            # complete whatever the step: only the broken answers stop this roll
            self.looks += 1
            report = {"complete": True, "running": ["10.234.0.1", "10.234.0.2"], "problems": []}
            return True, SimpleNamespace(stdout_lines=[json.dumps(report)], stderr_lines=[])
        return super().run_shell_command(command, **kwargs)


def roll_with(manager: ScriptedManager) -> bool:
    previous, desired = spec(OLD, replicas=2), spec(NEW, replicas=2)
    gate = MeshGate("demo", "demo", "beamfleet-demo", "demo-agent", "/run/secrets/c", timeout=1)
    command = gated_roll_command(desired, previous, gate, {})
    return bool(command.function(None, manager, *command.args, **command.kwargs))


def said_by(manager: ScriptedManager) -> str:
    """What the roll told the operator (the commands it ran left out)."""
    return "\n".join(line for line in manager.lines if not line.startswith("python3"))


def images_applied(manager: ScriptedManager) -> list[str]:
    return [a["TaskTemplate"]["ContainerSpec"]["Image"] for a in manager.applied]


@pytest.mark.parametrize(
    ("answer", "times", "named"),
    [
        # garbage at every look from the first step on, the rollback's look included
        ([GARBAGE], 99, "the mesh gate answered something that is not JSON: 'Error response"),
        (['{"complete": tr'], 99, "the mesh gate answered something that is not JSON"),
        (["[1, 2]"], 99, "the mesh gate answered JSON that is not a report: '[1, 2]'"),
        ([], 1, "the mesh gate answered nothing"),
        (SSHException("No existing session"), 1, "SSHException: No existing session"),
        (TimeoutError(), 1, "TimeoutError"),
    ],
    ids=["garbage", "cut-short", "not-a-report", "empty", "ssh-error", "timeout"],
)
def test_a_gate_that_answers_no_report_mid_roll_puts_the_previous_spec_back_and_fails(
    answer: list[str] | Exception, times: int, named: str
) -> None:
    manager = BrokenGate(answer, times=times)
    assert roll_with(manager) is False
    assert images_applied(manager) == ["demo:2", "demo:1"]  # the first step, then back
    assert not is_held(manager.applied[1])
    said = said_by(manager)
    assert named in said, said
    assert "putting the previous version back" in said
    if answer == [GARBAGE]:
        assert GARBAGE not in said  # quoted shortened
        assert "the mesh could not be looked at" in said  # the rollback's look: garbage too
    elif times == 1:
        assert "rolled back: the previous version is in the complete mesh" in said


def test_an_engine_api_that_answers_garbage_mid_roll_puts_the_previous_spec_back() -> None:
    class GarbledTasks(ScriptedManager):
        def run_shell_command(self, command: Any, **kwargs: Any) -> tuple[bool, Any]:
            words = shlex.split(command.get_raw_value())
            if self.applied and "get" in words and words[-1].startswith("/tasks"):
                return True, SimpleNamespace(stdout_lines=["<html>502</html>"], stderr_lines=[])
            return super().run_shell_command(command, **kwargs)

    manager = GarbledTasks()
    assert roll_with(manager) is False
    assert images_applied(manager) == ["demo:2", "demo:1"]
    said = said_by(manager)
    assert "answered something that is not JSON: '<html>502</html>'" in said, said


@pytest.mark.parametrize(
    ("answer", "named"),
    [
        ([GARBAGE], "the mesh gate answered something that is not JSON: 'Error response"),
        ([], "the mesh gate answered nothing"),
        (SSHException("No existing session"), "SSHException: No existing session"),
    ],
    ids=["garbage", "empty", "ssh-error"],
)
def test_a_gate_that_answers_no_report_before_the_roll_changes_nothing(
    answer: list[str] | Exception, named: str
) -> None:
    manager = BrokenGate(answer, times=1, first=1)
    assert roll_with(manager) is False
    assert manager.applied == []
    said = said_by(manager)
    assert named in said, said
    assert "nothing was changed" in said and "putting the previous version back" not in said


def test_a_rebalance_whose_service_reads_as_garbage_changes_nothing_and_fails() -> None:
    class GarbledService(ScriptedManager):
        def run_shell_command(self, command: Any, **kwargs: Any) -> tuple[bool, Any]:
            if shlex.split(command.get_raw_value())[-1] == "/services/demo":
                return True, SimpleNamespace(stdout_lines=[GARBAGE], stderr_lines=[])
            return super().run_shell_command(command, **kwargs)

    gate = MeshGate("demo", "demo", "beamfleet-demo", "demo-agent", "/run/secrets/c", timeout=1)
    command = rebalance_command("demo", gate, {})
    manager = GarbledService()
    assert command.function(None, manager, *command.args, **command.kwargs) is False
    assert manager.applied == []
    assert "GET /services/demo answered something that is not JSON: 'Error response" in (
        said_by(manager)
    )
