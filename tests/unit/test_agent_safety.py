"""The agent in production: nothing outlives its node, removals are bounded, DNS answers
are filtered to the application's subnet, and cookie files must be private."""

from __future__ import annotations

import asyncio
import io
import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from beamfleet.controller.deploys.agent import AgentSettings, agent_args
from beamfleet.controller.deploys.app import AppSettings
from beamfleet.runtime.cli import main
from beamfleet.runtime.discovery.agent import Agent
from beamfleet.runtime.discovery.config import load_config
from beamfleet.runtime.discovery.errors import ConfigError
from beamfleet.runtime.discovery.log import JsonLog
from beamfleet.runtime.discovery.metrics import Metrics
from beamfleet.runtime.discovery.ownership import AllOwnership
from beamfleet.runtime.discovery.peers import PeerNaming
from beamfleet.runtime.discovery.sources import build_source
from beamfleet.runtime.discovery.sources.resolver import StubResolver
from tests.unit.test_agent_cli import _serve
from tests.unit.test_agent_parts import log_lines
from tests.unit.test_discovery import A, B, C, D, FakeCluster, ListSource, run


def make_agent(
    tmp_path: Path, source: ListSource, cluster: FakeCluster, clock: list[float], **flags: Any
) -> tuple[Agent, io.StringIO]:
    cookie = tmp_path / "cookie"
    cookie.write_text("x")
    cookie.chmod(0o400)
    flags = {"grace_seconds": 0, "grace_polls": 2, **flags}
    config = load_config(flags, ["static:app@h"], env={"BEAMFLEET_COOKIE_FILE": str(cookie)})
    out = io.StringIO()
    agent = Agent(
        config, [source], AllOwnership(), cluster.connect, log=JsonLog(out), clock=lambda: clock[0]
    )
    return agent, out


# ---- 1. a node's metric series go when the node does ----------------------------------------


def test_series_of_a_node_no_longer_owned_are_removed(tmp_path: Path) -> None:
    cluster = FakeCluster([A, B, C])
    source = ListSource([{A, B, C}, {A, B}])
    clock = [0.0]
    agent, _ = make_agent(tmp_path, source, cluster, clock)

    async def go() -> tuple[str, str]:
        await agent.poll_once()
        first = agent.metrics.render()
        clock[0] += 1
        await agent.poll_once()
        return first, agent.metrics.render()

    first, second = run(go())
    label = f'node="{C}"'
    assert f"beamfleet_agent_node_reachable{{{label}}} 1" in first
    assert f"beamfleet_agent_desired_peers{{{label}}} 2" in first
    stale = [line for line in second.splitlines() if label in line]
    assert stale == [], stale
    # the nodes still owned keep theirs
    assert f'beamfleet_agent_node_reachable{{node="{A}"}} 1' in second


def test_a_tls_nodes_certificate_expiry_is_a_metric(tmp_path: Path) -> None:
    cluster = FakeCluster([A, B])
    cluster.cert_expiry[A] = 1_900_000_000.0  # A runs TLS distribution, B plain TCP
    agent, _ = make_agent(tmp_path, ListSource([{A, B}]), cluster, [0.0])
    run(agent.poll_once())
    text = agent.metrics.render()
    assert f'beamfleet_agent_node_cert_expiry_seconds{{node="{A}"}} 1900000000' in text
    assert f'beamfleet_agent_node_cert_expiry_seconds{{node="{B}"}}' not in text


def test_metrics_drop_series_by_label() -> None:
    m = Metrics()
    m.set("g", 1, node="x")
    m.set("g", 1, node="y")
    m.inc("c", node="x", source="s")
    m.set("h", 3)
    m.drop_labelled(node="x")
    assert m.values == {("g", (("node", "y"),)): 1.0, ("h", ()): 3.0}


# ---- 2. in-flight connects go when their peer or their node does ---------------------------


def test_inflight_connects_are_cancelled_when_the_peer_leaves_or_the_node_is_not_owned(
    tmp_path: Path,
) -> None:
    cluster = FakeCluster([A, B, C, D], slow={D})
    source = ListSource([{A, B, D}, {A, B}, {B, C}])
    clock = [0.0]
    agent, _ = make_agent(tmp_path, source, cluster, clock, connect_timeout=30.0, interval=0.05)

    async def go() -> None:
        await agent.poll_once()  # A and B start connecting D, which never answers
        started = {n: agent.links.inflight(n).tasks.get(D) for n in (A, B)}
        assert all(started.values()), "the slow connects are in flight"
        clock[0] += 1
        await agent.poll_once()  # D left the desired set
        for node, task in started.items():
            assert task is not None
            await asyncio.wait([task], timeout=1.0)  # a cancel takes a few loop turns
            assert task.cancelled(), f"{node}->{D} connect still running"
            assert D not in agent.links.inflight(node).tasks
        # C joins while A stops being owned: A's link and what runs through it go
        cluster.slow.add(C)
        clock[0] += 1
        await agent.poll_once()
        through_a = agent.links.state(A).inflight.tasks
        assert A not in agent.links and not through_a
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in pending:
            t.cancel()

    run(go())


# ---- 3. removals are bounded ----------------------------------------------------------------

TEN = [f"app@10.0.1.{i}" for i in range(1, 11)]


def mesh_of(cluster: FakeCluster, nodes: list[str]) -> None:
    for n in nodes:
        cluster.visible[n] = set(nodes) - {n}


def departed(cluster: FakeCluster) -> set[str]:
    return {peer for peer, _ in cluster.leaves}


def test_a_partial_answer_removes_at_most_a_fraction_per_grace_window(tmp_path: Path) -> None:
    cluster = FakeCluster(TEN)
    mesh_of(cluster, TEN)
    source = ListSource([set(TEN), set(TEN[:2])])  # then only 2 of 10 records, for good
    clock = [0.0]
    agent, out = make_agent(tmp_path, source, cluster, clock, grace_polls=3, grace_seconds=5)

    async def rounds(n: int, step: float) -> None:
        for _ in range(n):
            await agent.poll_once()
            clock[0] += step

    run(rounds(5, 2.0))  # polls 2-4 miss 8 nodes; t=8 is past the 5 s grace
    assert len(departed(cluster)) == 3, "0.34 of 10 managed peers per window"
    deferred = [e for e in log_lines(out) if e["event"] == "removal_deferred"]
    assert deferred and deferred[0]["deferred"] == 5 and deferred[0]["limit"] == 3
    report = agent.status.report()
    assert len(report["removal_deferred"]) == 5
    assert set(report["removal_deferred"]) <= set(TEN[2:])

    run(rounds(1, 2.0))  # still inside the same 5 s window: nobody more
    assert len(departed(cluster)) == 3
    run(rounds(20, 2.0))  # later windows go on removing, never more than the cap at once
    assert departed(cluster) == set(TEN[2:])
    assert agent.status.report()["removal_deferred"] == []


def test_beamfleet_status_prints_the_deferred_removals() -> None:
    state = {
        "healthy": True,
        "reason": "ok",
        "ownership": "all",
        "desired": [A],
        "last_success_age": 0.4,
        "pending_removal": {},
        "removal_deferred": [B, C],
        "removal_limit": 1,
        "sources": [],
        "owned": {},
    }
    server, port = _serve(state)
    try:
        result = CliRunner().invoke(main, ["status", "--listen", f"127.0.0.1:{port}"])
    finally:
        server.shutdown()
    assert result.exit_code == 0, result.output
    assert "removal deferred: 2 peer(s)" in result.output
    assert "at most 1 removed per grace window" in result.output


def test_at_least_one_peer_may_always_be_removed(tmp_path: Path) -> None:
    cluster = FakeCluster([A, B])
    mesh_of(cluster, [A, B])
    source = ListSource([{A, B}, {A}])
    clock = [0.0]
    agent, _ = make_agent(tmp_path, source, cluster, clock, max_removal_fraction=0.01)

    async def go() -> None:
        for _ in range(4):
            await agent.poll_once()
            clock[0] += 1

    run(go())
    assert departed(cluster) == {B}


def config_env(tmp_path: Path) -> dict[str, str]:
    return {"BEAMFLEET_COOKIE_FILE": str(cookie_file(tmp_path, 0o400))}


def test_max_removal_fraction_is_bounded(tmp_path: Path) -> None:
    env = config_env(tmp_path)
    with pytest.raises(ConfigError, match="--max-removal-fraction must be in"):
        load_config({"max_removal_fraction": 0.0}, ["static:a@h"], env=env)
    config = load_config({"max_removal_fraction": 1.0}, ["static:a@h"], env=env)
    assert config.max_removal_fraction == 1.0


# ---- 4. DNS answers are filtered to the application's subnet ---------------------------------


class FixedResolver(StubResolver):
    def __init__(self, answer: list[str]) -> None:
        super().__init__([("127.0.0.1", 53)])
        self.answer = answer

    async def addresses(self, name: str) -> list[str]:
        return list(self.answer)


def test_dns_source_keeps_only_addresses_inside_the_subnet_and_logs_the_others_once() -> None:
    resolver = FixedResolver(["10.0.1.5", "192.168.7.2", "10.0.1.6", "fd00::1"])
    out = io.StringIO()
    source = build_source(
        "dns",
        "tasks.app",
        basename="app",
        naming=PeerNaming.parse("ip"),
        resolver=lambda: resolver,
        subnets=(ipaddress.ip_network("10.0.1.0/24"),),
        log=JsonLog(out),
    )
    first = run(source.poll())
    second = run(source.poll())
    assert {p.name for p in first} == {"app@10.0.1.5", "app@10.0.1.6"} == {p.name for p in second}
    dropped = [e for e in log_lines(out) if e["event"] == "addresses_outside_subnet"]
    assert len(dropped) == 1
    assert dropped[0]["addresses"] == ["192.168.7.2", "fd00::1"]
    assert dropped[0]["source"] == "dns:tasks.app"


def test_an_answer_with_no_address_inside_the_subnet_is_empty_and_says_why() -> None:
    source = build_source(
        "dns",
        "tasks.app",
        basename="app",
        naming=PeerNaming.parse("ip"),
        resolver=lambda: FixedResolver(["192.168.7.2"]),
        subnets=(ipaddress.ip_network("10.0.1.0/24"),),
    )
    assert run(source.poll()) == set()
    assert source.empty_reason == "no address of tasks.app is inside --subnet 10.0.1.0/24"


def test_subnet_setting_parses_a_comma_list_and_refuses_garbage(tmp_path: Path) -> None:
    env = config_env(tmp_path)
    config = load_config({"subnet": "10.0.1.0/24, fd00::/64"}, ["static:a@h"], env=env)
    assert config.subnets == (
        ipaddress.ip_network("10.0.1.0/24"),
        ipaddress.ip_network("fd00::/64"),
    )
    assert load_config({}, ["static:a@h"], env=env).subnets == ()
    with pytest.raises(ConfigError, match="--subnet"):
        load_config({"subnet": "10.0.1.1/24"}, ["static:a@h"], env=env)


def test_swarm_agent_is_given_the_app_subnet() -> None:
    app = AppSettings(name="shop", basename="shop", subnet="10.9.0.0/24")
    args = agent_args(app, AgentSettings())
    assert args[args.index("--subnet") + 1] == "10.9.0.0/24"


# ---- 5. cookie files must be private ----------------------------------------------------------


def cookie_file(tmp_path: Path, mode: int) -> Path:
    path = tmp_path / "cookie"
    path.write_text("SOMECOOKIEVALUE1234\n")
    path.chmod(mode)
    return path


class NeverStarted:
    """Stands in for the agent: the test fails at once (instead of running an agent)."""

    @classmethod
    def from_config(cls, *args: object, **kwargs: object) -> None:
        raise AssertionError("the agent was started with a cookie file others can read")


def test_agent_refuses_a_cookie_file_others_can_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("beamfleet.runtime.cli.agent.Agent", NeverStarted)
    path = cookie_file(tmp_path, 0o644)
    result = CliRunner().invoke(
        main, ["agent", "--source", "static:a@10.0.0.1", "--cookie-file", str(path)]
    )
    assert result.exit_code == 1, result.output
    assert str(path) in result.output and "0644" in result.output
    assert "chmod 400" in result.output
    assert "SOMECOOKIEVALUE" not in result.output


def test_node_cli_refuses_a_cookie_file_others_can_read(tmp_path: Path) -> None:
    path = cookie_file(tmp_path, 0o640)
    result = CliRunner().invoke(main, ["node", "ping", "a@127.0.0.1", "--cookie-file", str(path)])
    assert result.exit_code == 2, result.output
    assert re.search(rf"{re.escape(str(path))}.*0640.*chmod 400", result.output)
    assert "SOMECOOKIEVALUE" not in result.output
