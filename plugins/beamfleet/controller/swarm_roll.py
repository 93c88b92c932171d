"""A Swarm roll gated on the mesh: one task at a time, each replacement in the complete mesh
before the next starts, the old version put back when one does not join.

Swarm's own rolling update moves on once a new task passes its healthcheck; a node that
starts but never joins the other nodes passes. So beamfleet paces the roll and Swarm does
each replacement:

* **a step** applies the new spec with an ``UpdateConfig`` that replaces one task
  (start-first) and then holds for :data:`HOLD_S` seconds; the next step changes only
  that hold (by one second), which restarts Swarm's updater, which replaces the next task
  at once and holds again;
* **the gate**, after each step: the new task runs, the task it replaced has stopped, and
  every node of the application lists every other one (``mesh_check.py``, run from the
  agent container on the manager: the same look as ``check.py``), within the timeout;
* **the end**: when no task runs the old spec, the spec the inventory gives (its own
  ``UpdateConfig``) is applied: nothing is left to replace, so nothing restarts;
* **a failed step** (the new task does not start, Swarm pauses the update, or the gate
  times out): the spec from before the roll goes back (Swarm rolls the replaced tasks back
  its usual way) and the run fails, naming the node and what the gate saw. Any other
  failure once the first step was applied ends the same way (a gate or Engine API that
  answers no JSON, :class:`UnreadableAnswer`; an SSH error; pyinfra's timeout), named in
  the run's output; a failure before that changes nothing and says so.

Steps pause rather than roll back on a task failure: Swarm's own rollback returns to its
``PreviousSpec``, the previous *step*, which already has the new version.

The pure parts (the step spec, which tasks are stale, the progress of a step, the
messages) are unit-tested; :func:`run_gated_roll` is the execution-time half that the
service operation hands to pyinfra.
"""

from __future__ import annotations

import copy
import json
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyinfra.api.command import FunctionCommand, StringCommand
from pyinfra.api.host import Host
from pyinfra.api.state import State
from pyinfra.connectors.util import CommandOutput

from beamfleet.controller.facts.beam import mesh_check_command
from beamfleet.controller.operations.engine_api import engine_api_command, run_with_secret_stdin
from beamfleet.controller.spec_drift import spec_drift
from beamfleet.runtime.constants import COOKIE_SECRET_TARGET

SECOND = 1_000_000_000  # the Engine API counts durations in nanoseconds
# Long enough that Swarm never moves on by itself; each step ends the hold.
HOLD_S = 3600
POLL_S = 1.0
# Task states after which a container is gone (Swarm's TaskState names).
ENDED = frozenset({"complete", "shutdown", "failed", "rejected", "orphaned", "remove"})


@dataclass(frozen=True)
class MeshGate:
    """What the gate looks at: one application's nodes, from its agent on the manager.

    + app: the application's service
    + basename: its nodes' basename
    + network: its overlay network
    + agent: the agent's service (a container of it must run on the manager)
    + cookie_file: the cookie's path inside the agent container
    + timeout: seconds a replaced task has to start and join the complete mesh
    + tls: with TLS distribution, the agent container's ``("cert"|"key"|"ca", path)`` pairs
    """

    app: str
    basename: str
    network: str
    agent: str
    cookie_file: str
    timeout: int
    tls: tuple[tuple[str, str], ...] = ()  # the agent container's certificate paths

    def command(self, timeout: float) -> str:
        return mesh_check_command(
            app=self.app, basename=self.basename, network=self.network, agent=self.agent,
            cookie_file=self.cookie_file, timeout=timeout, tls=dict(self.tls) or None,
        )  # fmt: skip


@dataclass(frozen=True)
class Task:
    """One Swarm task, as much of it as the roll reads."""

    id: str
    slot: int
    desired: str
    state: str
    node_id: str
    address: str  # on the application's network ("" before it has one)
    error: str
    message: str
    spec: Mapping[str, Any]
    index: int = 0  # the swarm's version index: larger for newer tasks

    @classmethod
    def from_api(cls, raw: Mapping[str, Any], network: str) -> Task:
        status = raw.get("Status") or {}
        address = ""
        for attachment in raw.get("NetworksAttachments") or []:
            if (attachment.get("Network") or {}).get("Spec", {}).get("Name") == network:
                found = attachment.get("Addresses") or []
                address = found[0].split("/")[0] if found else ""
        return cls(
            id=str(raw.get("ID", "")),
            slot=int(raw.get("Slot") or 0),
            desired=str(raw.get("DesiredState", "")),
            state=str(status.get("State", "")),
            node_id=str(raw.get("NodeID", "")),
            address=address,
            error=str(status.get("Err", "")),
            message=str(status.get("Message", "")),
            spec=raw.get("Spec") or {},
            index=int((raw.get("Version") or {}).get("Index") or 0),
        )

    @property
    def live(self) -> bool:
        """Meant to run and not ended (it may still be starting)."""
        return self.desired == "running" and self.state not in ENDED

    @property
    def lingering(self) -> bool:
        """Told to stop, but its container has not ended yet."""
        return self.desired != "running" and self.state not in ENDED


def step_spec(desired: Mapping[str, Any], step: int) -> dict[str, Any]:
    """``desired`` with the ``UpdateConfig`` of step ``step``: one task, then a hold whose
    length differs from the previous step's (so applying it restarts Swarm's updater)."""
    spec = copy.deepcopy(dict(desired))
    spec["UpdateConfig"] = {
        **(spec.get("UpdateConfig") or {}),
        "Parallelism": 1,
        "Delay": (HOLD_S + step) * SECOND,
        "Order": "start-first",
        "FailureAction": "pause",
        "MaxFailureRatio": 0,
    }
    return spec


def is_held(live: Mapping[str, Any]) -> bool:
    """``live`` is a step's spec: a gated roll was interrupted there."""
    delay = int((live.get("UpdateConfig") or {}).get("Delay") or 0)
    return delay >= HOLD_S * SECOND


def restore_spec(previous: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The spec a failed roll goes back to: ``previous`` with the pace of ``desired`` (an
    interrupted roll may have left a step's hold in ``previous``)."""
    spec = copy.deepcopy(dict(previous))
    for key in ("UpdateConfig", "RollbackConfig"):
        if key in desired:
            spec[key] = copy.deepcopy(desired[key])
    return spec


def _container(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    return (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}


def cookie_secret_of(spec: Mapping[str, Any]) -> str | None:
    """The secret mounted as the cookie (target ``erlang_cookie``), if any."""
    for ref in _container(spec).get("Secrets") or []:
        if (ref.get("File") or {}).get("Name") == COOKIE_SECRET_TARGET:
            return str(ref.get("SecretName"))
    return None


def uses_dist_tls(spec: Mapping[str, Any]) -> bool:
    return any(
        str(e).startswith("BEAMFLEET_DIST_TLS_CERT=") for e in _container(spec).get("Env") or []
    )


def ungated_reason(desired: Mapping[str, Any], live: Mapping[str, Any]) -> str | None:
    """Why a change of the task template cannot be gated on the mesh, or None."""
    if cookie_secret_of(desired) != cookie_secret_of(live):
        return (
            "the cookie changes (nodes with the old and the new one cannot connect, so no "
            "mesh can be complete in between)"
        )
    if uses_dist_tls(desired) != uses_dist_tls(live):
        return (
            "distribution switches between TCP and TLS (OTP cannot connect a TLS node to a "
            "TCP one: the mesh is complete again once every node has switched)"
        )
    replicas = int(((live.get("Mode") or {}).get("Replicated") or {}).get("Replicas") or 0)
    if replicas == 0:
        return "it runs no task"
    return None


def stale(
    tasks: Sequence[Task], template: Mapping[str, Any], networks: Mapping[str, str]
) -> list[Task]:
    """The live tasks that do not run ``template`` yet."""
    return [t for t in tasks if t.live and spec_drift(template, t.spec, networks)]


@dataclass(frozen=True)
class StepState:
    """Where a step stands, judged from one list of tasks."""

    done: bool
    waiting_for: str  # what it still waits for (for messages); "" when done
    newest: Task | None  # the newest task that runs the new spec


def judge_step(
    tasks: Sequence[Task],
    template: Mapping[str, Any],
    networks: Mapping[str, str],
    *,
    stale_before: int,
    replicas: int,
    known: frozenset[str] = frozenset(),
) -> StepState:
    """A step is done when one stale task fewer is meant to run, every task meant to run
    is running (as many as ``replicas``), and no stopped task lingers. ``known``: the
    IDs of the tasks there were before the step (the new one is not among them)."""
    fresh = [t for t in tasks if t.live and not spec_drift(template, t.spec, networks)]
    started = [t for t in fresh if t.id not in known] or fresh
    newest = max(started, key=lambda t: t.index, default=None)
    left = len(stale(tasks, template, networks))
    live = [t for t in tasks if t.live]
    if left >= stale_before > 0:
        return StepState(False, "Swarm to start a task of the new version", newest)
    not_running = [t for t in live if t.state != "running"]
    if not_running:
        t = not_running[0]
        detail = f": {t.error or t.message}" if (t.error or t.message) else ""
        return StepState(False, f"task slot {t.slot} to run (it is {t.state}{detail})", t)
    if len(live) != replicas:
        return StepState(False, f"{replicas} running tasks ({len(live)} now)", newest)
    lingering = [t for t in tasks if t.lingering]
    if lingering:
        return StepState(False, f"the replaced task slot {lingering[0].slot} to stop", newest)
    return StepState(True, "", newest)


def node_label(task: Task | None, basename: str, hostnames: Mapping[str, str]) -> str:
    """``demo@10.234.0.7 (slot 2 on host2)``, or what is known of a task that has no address."""
    if task is None:
        return "the new task"
    where = hostnames.get(task.node_id, task.node_id[:12] or "no host yet")
    name = f"{basename}@{task.address}" if task.address else f"task {task.id[:12]}"
    return f"{name} (slot {task.slot} on {where})"


def gate_summary(report: Mapping[str, Any]) -> str:
    """What the gate saw, in one line: its problems (a node that could not be asked comes
    with its own error, e.g. the cookies differ)."""
    problems = list(report.get("problems") or []) or ["no report"]
    return "; ".join(problems)


class RollFailed(Exception):
    """A step of the roll failed: the message names the node and what was seen."""


class UnreadableAnswer(RollFailed):
    """A command on the manager (the mesh gate, the Engine API client) printed something
    other than the JSON it gives: nothing can be judged from it, so the roll stops."""


# Characters of an unreadable answer a message quotes (a daemon's message, a traceback).
QUOTED_CHARS = 120


def quoted(text: str, limit: int = QUOTED_CHARS) -> str:
    """``text`` as a message quotes it, shortened to ``limit`` characters.

    Example: ``quoted("x" * 200, 10)`` is ``"'xxxxxxx...'"``.
    """
    text = text.strip()
    return repr(text if len(text) <= limit else text[: max(0, limit - 3)] + "...")


def parse_answer(output: CommandOutput, who: str, expect: type | None = None) -> Any:
    """The JSON value on the last line ``output`` (a pyinfra command's output) holds.

    ``who`` names the command in the :class:`UnreadableAnswer` raised when there is no
    such line, or it is not JSON, or (with ``expect``) not of that JSON type::

        parse_answer(out, "the mesh gate", dict)
        # UnreadableAnswer: the mesh gate answered something that is not JSON: 'Error: ...'
    """
    lines = [line for line in output.stdout_lines if line.strip()]
    if not lines:
        stderr = " ".join(output.stderr_lines).strip()
        raise UnreadableAnswer(f"{who} answered nothing{f': {quoted(stderr)}' if stderr else ''}")
    try:
        value = json.loads(lines[-1])
    except ValueError:
        raise UnreadableAnswer(
            f"{who} answered something that is not JSON: {quoted(lines[-1])}"
        ) from None
    if expect is not None and not isinstance(value, expect):
        raise UnreadableAnswer(f"{who} answered JSON that is not a report: {quoted(lines[-1])}")
    return value


def describe_failure(exc: BaseException) -> str:
    """What stopped a roll, for its message: a :class:`RollFailed` says it itself; any
    other error (SSH, pyinfra's timeout, a bug) is named by its type and message.

    Example: ``describe_failure(TimeoutError())`` is ``"the roll stopped on an error:
    TimeoutError"``.
    """
    if isinstance(exc, RollFailed):
        return str(exc)
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return f"the roll stopped on an error: {detail}"


@dataclass
class _Roll:
    """The execution-time state of one gated roll (on the acting manager)."""

    host: Host
    desired: dict[str, Any]
    previous: dict[str, Any]
    gate: MeshGate
    networks: dict[str, str]
    # What a task must have to count as replaced (default: the desired task template).
    match: Mapping[str, Any] | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    # Whether a spec was sent: from then on the service may be mid-roll, whatever fails.
    changed: bool = False

    @property
    def name(self) -> str:
        return str(self.desired["Name"])

    def say(self, line: str, *, fg: str | None = None) -> None:
        if fg:
            self.host.log_styled(f"{self.name}: {line}", fg=fg)
        else:
            self.host.log_styled(f"{self.name}: {line}")

    def get(self, path: str) -> Any:
        ok, output = self.host.run_shell_command(
            engine_api_command("get", path), print_output=False, print_input=False
        )
        if not ok:
            raise RollFailed(f"Docker Engine API GET {path}: {' '.join(output.stderr_lines)}")
        return parse_answer(output, f"Docker Engine API GET {path}")

    def tasks(self) -> list[Task]:
        query = urllib.parse.quote(json.dumps({"service": [self.name]}))
        found = self.get(f"/tasks?filters={query}")
        return [Task.from_api(raw, self.gate.network) for raw in found]

    def hostnames(self) -> dict[str, str]:
        return {
            str(n["ID"]): str((n.get("Description") or {}).get("Hostname", n["ID"][:12]))
            for n in self.get("/nodes")
        }

    def apply(self, spec: Mapping[str, Any]) -> None:
        body = json.dumps(spec, sort_keys=True)
        # Before the call: one that fails on the way back (SSH) may have been applied.
        self.changed = True
        if not run_with_secret_stdin(self.host, engine_api_command("apply-service"), body):
            raise RollFailed("Docker refused the service update (its message is above)")

    def look(self, timeout: float) -> dict[str, Any]:
        ok, output = self.host.run_shell_command(
            StringCommand(self.gate.command(timeout)), print_output=False, print_input=False
        )
        if not ok:
            return {"complete": False, "problems": [" ".join(output.stderr_lines)[-300:]]}
        report: dict[str, Any] = parse_answer(output, "the mesh gate", dict)
        return report

    @property
    def template(self) -> Mapping[str, Any]:
        if self.match is not None:
            return self.match
        return self.desired.get("TaskTemplate") or {}

    @property
    def replicas(self) -> int:
        return int(((self.desired.get("Mode") or {}).get("Replicated") or {}).get("Replicas", 0))

    def wait_step(self, stale_before: int, known: frozenset[str]) -> Task | None:
        deadline = self.clock() + self.gate.timeout
        while True:
            tasks = self.tasks()
            step = judge_step(
                tasks, self.template, self.networks,
                stale_before=stale_before, replicas=self.replicas, known=known,
            )  # fmt: skip
            if step.done:
                return step.newest
            service = self.get(f"/services/{urllib.parse.quote(self.name)}")
            update = service.get("UpdateStatus") or {}
            if update.get("State") == "paused":
                raise RollFailed(
                    f"{node_label(step.newest, self.gate.basename, self.hostnames())} failed: "
                    f"Swarm paused the update: {update.get('Message', '')}"
                )
            if self.clock() >= deadline:
                raise RollFailed(
                    f"{node_label(step.newest, self.gate.basename, self.hostnames())} did not "
                    f"start within {self.gate.timeout} s: waited for {step.waiting_for}"
                )
            self.sleep(POLL_S)

    def run(self) -> None:
        before = self.look(timeout=self.gate.timeout)
        if not before.get("complete"):
            raise _NotStarted(
                f"the mesh is not complete before the roll, so nothing was changed: "
                f"{gate_summary(before)}"
            )
        total = len(stale(self.tasks(), self.template, self.networks))
        step, started = 0, self.clock()
        while True:
            tasks = self.tasks()
            left = len(stale(tasks, self.template, self.networks))
            if left == 0:
                break
            step += 1
            if step > total + 1:
                raise RollFailed(f"{left} tasks still run the old spec after {step - 1} steps")
            begun = self.clock()
            self.apply(step_spec(self.desired, step))
            newest = self.wait_step(left, frozenset(t.id for t in tasks))
            label = node_label(newest, self.gate.basename, self.hostnames())
            report = self.look(timeout=max(1.0, self.gate.timeout - (self.clock() - begun)))
            if not report.get("complete"):
                raise RollFailed(
                    f"{label} did not join the complete mesh within {self.gate.timeout} s: "
                    f"{gate_summary(report)}"
                )
            self.say(
                f"{step}/{total} replaced: {label} in the complete mesh of "
                f"{len(report.get('running') or [])} nodes ({self.clock() - begun:.1f} s)"
            )
        self.apply(self.desired)
        self.say(f"rolled {step} tasks, each gated on the mesh, in {self.clock() - started:.1f} s")

    def roll_back(self, reason: str) -> None:
        self.say(reason, fg="red")
        self.say("putting the previous version back", fg="red")
        restored = restore_spec(self.previous, self.desired)
        # Whatever broke the roll may break these too: each failure is reported, and the
        # previous spec is sent first, before anything whose answer is read.
        try:
            self.apply(restored)
        except Exception as exc:
            self.say(f"the rollback failed too: {describe_failure(exc)}", fg="red")
            return
        wait = max(60, self.gate.timeout * 2)
        try:
            ok, output = self.host.run_shell_command(
                engine_api_command("wait-rollout", self.name, str(wait)),
                print_output=False,
                print_input=False,
            )
            if not ok:
                stderr = " ".join(output.stderr_lines)
                self.say(f"the rollback did not complete: {stderr}", fg="red")
            report = self.look(timeout=max(60, self.gate.timeout * 2))
        except Exception as exc:
            self.say(
                "the previous spec was applied, but the mesh could not be looked at: "
                f"{describe_failure(exc)}",
                fg="red",
            )
            return
        if report.get("complete"):
            self.say("rolled back: the previous version is in the complete mesh", fg="red")
        else:
            self.say(f"rolled back, but the mesh is not complete: {gate_summary(report)}", fg="red")


class _NotStarted(RollFailed):
    """The roll refused to start: nothing was changed, so nothing is rolled back."""


def run_gated_roll(
    state: State,
    host: Host,
    *,
    desired: dict[str, Any],
    previous: dict[str, Any],
    gate: MeshGate,
    networks: dict[str, str],
    match: Mapping[str, Any] | None = None,
) -> bool:
    """Execution-time half of the gated roll (a ``FunctionCommand`` on the acting manager).

    ``match``: the task fields that mark a replaced task (default: all of the desired
    task template). Returns False (the operation fails) when the roll did not complete,
    whatever stopped it: then the previous spec runs again, unless nothing was changed.
    """
    roll = _Roll(host, desired, previous, gate, networks, match=match)
    try:
        roll.run()
    # Any error: one left through would leave a task of the new version, held by the
    # step's hour-long delay.
    except Exception as exc:
        reason = describe_failure(exc)
        if not roll.changed:
            if not isinstance(exc, _NotStarted):
                reason = (
                    f"the roll stopped before its first change, so nothing was changed: {reason}"
                )
            roll.say(reason, fg="red")
            return False
        roll.roll_back(reason)
        return False
    return True


def run_rebalance(
    state: State, host: Host, *, name: str, gate: MeshGate, networks: dict[str, str]
) -> bool:
    """Execution-time half of a rebalance: every task of ``name`` replaced through the
    gated roll (``TaskTemplate.ForceUpdate`` + 1), so the scheduler places each again.

    The spec is read when this runs (not when the deploy was planned): an update of the
    same service earlier in the run is kept.
    """
    ok, output = host.run_shell_command(
        engine_api_command("get", f"/services/{urllib.parse.quote(name)}"),
        print_output=False,
        print_input=False,
    )
    if not ok:
        host.log_styled(f"{name}: {' '.join(output.stderr_lines)}", fg="red")
        return False
    try:
        service = parse_answer(output, f"Docker Engine API GET /services/{name}", dict)
    except UnreadableAnswer as exc:
        host.log_styled(f"{name}: {exc}; nothing was changed", fg="red")
        return False
    live = service["Spec"]
    desired = copy.deepcopy(live)
    template = desired.setdefault("TaskTemplate", {})
    template["ForceUpdate"] = int(template.get("ForceUpdate") or 0) + 1
    # A task is replaced when it has the new ForceUpdate (the engine's answer has fields,
    # such as Runtime, that its tasks' specs do not repeat).
    return run_gated_roll(
        state, host, desired=desired, previous=live, gate=gate, networks=networks,
        match={"ForceUpdate": template["ForceUpdate"]},
    )  # fmt: skip


def rebalance_command(name: str, gate: MeshGate, networks: dict[str, str]) -> FunctionCommand:
    """The command that replaces every task of ``name`` through the gated roll."""
    return FunctionCommand(run_rebalance, (), {"name": name, "gate": gate, "networks": networks})


def gated_roll_command(
    desired: dict[str, Any], previous: dict[str, Any], gate: MeshGate, networks: dict[str, str]
) -> FunctionCommand:
    """The command of a gated roll from ``previous`` to ``desired`` (specs with their
    ``SecretName``s; they reach the manager on standard input only)."""
    return FunctionCommand(
        run_gated_roll,
        (),
        {"desired": desired, "previous": previous, "gate": gate, "networks": networks},
    )
