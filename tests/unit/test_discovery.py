"""Pure logic of the discovery agent, with a fake node connection (no I/O)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import dns.name
import pytest

from beamfleet.runtime.discovery.agent import Agent
from beamfleet.runtime.discovery.config import load_config
from beamfleet.runtime.discovery.departure import leave_exprs
from beamfleet.runtime.discovery.errors import ConfigError, SourceError
from beamfleet.runtime.discovery.metrics import Metrics
from beamfleet.runtime.discovery.ownership import AllOwnership, rendezvous_owner
from beamfleet.runtime.discovery.peers import Peer, PeerNaming
from beamfleet.runtime.discovery.reconcile import (
    AbsenceTracker,
    Inflight,
    ReconcileSettings,
    depart,
    plan,
    reconcile_node,
)
from beamfleet.runtime.discovery.sources.file import parse_lines
from beamfleet.runtime.discovery.sources.rancher import container_addresses
from beamfleet.runtime.discovery.sources.resolver import StubResolver, parse_nameserver
from beamfleet.runtime.discovery.sources.static import StaticSource
from beamfleet.runtime.erlang_dist import Atom, AuthenticationFailed, NodeNotRegistered

A, B, C, D = (f"app@10.0.0.{i}" for i in range(1, 5))


class FakeCluster:
    """Nodes and their visible sets; connects are instantaneous unless listed as slow."""

    def __init__(self, nodes: list[str], *, slow: set[str] = frozenset(),
                 dead: set[str] = frozenset(), bad_cookie: set[str] = frozenset()) -> None:
        self.visible: dict[str, set[str]] = {n: set() for n in nodes}
        self.slow, self.dead, self.bad_cookie = set(slow), set(dead), set(bad_cookie)
        self.calls: list[tuple[str, str, str]] = []
        self.leaves: list[tuple[str, list[str]]] = []
        self.cert_expiry: dict[str, float] = {}  # nodes on TLS distribution

    def link(self, node: str) -> FakeLink:
        return FakeLink(self, node)

    async def connect(self, node: str) -> FakeLink:
        if node in self.dead or node not in self.visible:
            raise NodeNotRegistered(node)
        if node in self.bad_cookie:
            raise AuthenticationFailed(node)
        return self.link(node)


class FakeLink:
    def __init__(self, cluster: FakeCluster, node: str) -> None:
        self.cluster, self.node, self._closed = cluster, node, False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def peer_cert_not_after(self) -> float | None:
        return self.cluster.cert_expiry.get(self.node)

    async def nodes(self, kind: str = "visible", *, timeout: float | None = None) -> list[str]:
        return sorted(self.cluster.visible[self.node])

    async def connect_node(self, peer: str, *, timeout: float | None = None) -> bool:
        self.cluster.calls.append(("connect", self.node, peer))
        if peer in self.cluster.slow:
            await asyncio.sleep(3600)
        if peer in self.cluster.dead or peer not in self.cluster.visible:
            return False
        self.cluster.visible[self.node].add(peer)
        self.cluster.visible[peer].add(self.node)
        return True

    async def disconnect_node(self, peer: str, *, timeout: float | None = None) -> bool:
        self.cluster.calls.append(("disconnect", self.node, peer))
        self.cluster.visible[self.node].discard(peer)
        self.cluster.visible.get(peer, set()).discard(self.node)
        return True

    async def rpc(self, module: str, function: str, args: list[Any], *,
                  timeout: float | None = None) -> Any:
        assert (module, function) == ("erl_eval", "exprs")
        # pull the peer list out of the abstract format: the cons cells of atoms
        peers = []
        cell = args[0][2][3][3][1]
        while cell[0] == "cons":
            peers.append(str(cell[2][2]))
            cell = cell[3]
        self.cluster.leaves.append((self.node, peers))
        for p in peers:
            await self.disconnect_node(p)
        return (Atom("value"), [Atom("true")] * len(peers), [])

    async def wait_closed(self) -> None:
        while not self._closed:
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        self._closed = True


def managed(node: str) -> bool:
    return node.startswith("app@")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ---- plan and grace -------------------------------------------------------------------

def test_plan_never_connects_a_node_to_itself_and_ignores_unmanaged_nodes() -> None:
    p = plan(A, [B, "rem-1234@10.0.0.1", "other@10.0.0.9", D], {A, B, C}, managed)
    assert p.missing == {C}
    assert p.extra == {D}


def test_absence_needs_both_polls_and_seconds() -> None:
    t = AbsenceTracker(grace_polls=3, grace_seconds=10)
    t.successful_answer({A}, [B], now=0)
    t.successful_answer({A}, [B], now=1)
    t.successful_answer({A}, [B], now=2)
    assert not t.eligible(B, now=2)  # 3 polls but only 2 s
    assert t.eligible(B, now=10)
    t2 = AbsenceTracker(grace_polls=3, grace_seconds=1)
    t2.successful_answer({A}, [B], now=0)
    assert not t2.eligible(B, now=100)  # 100 s but one poll


def test_reappearing_peer_resets_its_grace() -> None:
    t = AbsenceTracker(grace_polls=1, grace_seconds=0)
    t.successful_answer({A}, [B], now=0)
    t.successful_answer({A, B}, [], now=1)
    assert not t.eligible(B, now=5)


# ---- reconcile with a fake connection ---------------------------------------------------

def test_reconcile_connects_missing_peers_in_parallel_and_a_black_hole_stalls_nobody() -> None:
    cluster = FakeCluster([A, B, C, D], slow={D})
    settings = ReconcileSettings(connect_timeout=0.3, max_parallel=2)

    async def go() -> Any:
        return await reconcile_node(cluster.link(A), {A, B, C, D}, managed, settings)

    res = run(go())
    assert res.connected == {B, C}
    assert "timed out" in res.failed[D]
    assert ("connect", A, A) not in cluster.calls


def test_round_wait_leaves_slow_connect_in_flight_without_duplicating_it() -> None:
    cluster = FakeCluster([A, B, D], slow={D})
    settings = ReconcileSettings(connect_timeout=5)
    inflight = Inflight()

    async def go() -> Any:
        r1 = await reconcile_node(cluster.link(A), {A, B, D}, managed, settings,
                                  inflight=inflight, round_wait=0.05)
        r2 = await reconcile_node(cluster.link(A), {A, B, D}, managed, settings,
                                  inflight=inflight, round_wait=0.05)
        for t in inflight.tasks.values():
            t.cancel()
        return r1, r2

    r1, r2 = run(go())
    assert D not in r2.failed and D not in r2.connected
    assert r1.connected == {B} and D not in r1.failed
    assert [c for c in cluster.calls if c[2] == D] == [("connect", A, D)]


def test_depart_makes_the_peer_leave_on_its_own_side() -> None:
    cluster = FakeCluster([A, B, C, D])
    for x in (A, B, C, D):
        cluster.visible[x] = {A, B, C, D} - {x}
    holders = {A: cluster.link(A), B: cluster.link(B)}
    how = run(depart(D, cluster.connect, holders, managed, ReconcileSettings()))
    assert how == "left"
    assert cluster.leaves == [(D, sorted([A, B, C]))]
    # no remaining node disconnected anyone itself
    assert not [c for c in cluster.calls if c[0] == "disconnect" and c[1] != D]
    assert cluster.visible[A] == {B, C}


def test_depart_of_an_unreachable_peer_falls_back_to_the_holders() -> None:
    cluster = FakeCluster([A, B, D], dead={D})
    cluster.visible[A] = {D}
    how = run(depart(D, cluster.connect, {A: cluster.link(A)}, managed, ReconcileSettings()))
    assert how == "disconnected"
    assert ("disconnect", A, D) in cluster.calls


def test_leave_expression_is_one_erl_eval_sequence_suspending_global() -> None:
    exprs = leave_exprs([A, B])
    text = repr(exprs)
    assert "suspend_process" in text and "resume_process" in text
    assert text.index("suspend_process") < text.index("disconnect_node") \
        < text.index("resume_process")


# ---- the agent loop with fakes ---------------------------------------------------------

class ListSource:
    def __init__(self, answers: list[set[str] | Exception]) -> None:
        self.label, self.basename = "fake", "app"
        self.empty_reason, self.resolver_stats = "", None
        self.answers = answers

    async def poll(self) -> set[Peer]:
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return {Peer(n) for n in answer}


def make_agent(tmp_path: Path, source: ListSource, cluster: FakeCluster,
               clock: list[float], **flags: Any) -> Agent:
    cookie = tmp_path / "cookie"
    cookie.write_text("x")
    flags = {"grace_seconds": 0, "grace_polls": 2, **flags}
    config = load_config(flags, ["static:app@h"], env={"BEAMFLEET_COOKIE_FILE": str(cookie)})
    return Agent(config, [source], AllOwnership(), cluster.connect,
                 log=None, clock=lambda: clock[0])


def test_failed_or_empty_answers_never_remove_anyone(tmp_path: Path) -> None:
    cluster = FakeCluster([A, B, C])
    fail = SourceError("fake", "timeout")
    source = ListSource([{A, B, C}, fail, fail, set(), set(), fail, set(), {A, B, C}])
    clock = [0.0]
    agent = make_agent(tmp_path, source, cluster, clock)

    async def go() -> None:
        for _ in range(8):
            await agent.poll_once()
            clock[0] += 100  # well past any grace in seconds, and past the source backoff

    run(go())
    assert cluster.visible[A] == {B, C}
    assert not [c for c in cluster.calls if c[0] == "disconnect"]
    assert agent.metrics.get("beamfleet_agent_poll_errors_total", source="fake") == 6


def test_departed_peer_is_removed_after_the_grace(tmp_path: Path) -> None:
    cluster = FakeCluster([A, B, C])
    source = ListSource([{A, B, C}, {A, B}])
    clock = [0.0]
    agent = make_agent(tmp_path, source, cluster, clock)

    async def go() -> list[set[str]]:
        seen = []
        for _ in range(4):
            await agent.poll_once()
            seen.append(set(cluster.visible[A]))
            clock[0] += 1
        return seen

    seen = run(go())
    assert seen[0] == {B, C}
    assert seen[1] == {B, C}  # absent from one answer: kept (grace 2 polls)
    assert seen[2] == {B}
    assert cluster.leaves and cluster.leaves[0][0] == C


def test_health_needs_a_recent_success_and_every_owned_node(tmp_path: Path) -> None:
    cluster = FakeCluster([A, B], bad_cookie={B})
    source = ListSource([{A, B}])
    clock = [0.0]
    agent = make_agent(tmp_path, source, cluster, clock)
    assert agent.status.healthy() == (False, "no successful poll yet")
    run(agent.poll_once())
    ok, reason = agent.status.healthy()
    assert not ok and B in reason
    assert "cookie" in agent.links.error(B).lower()


# ---- sources, naming, config ---------------------------------------------------------

def test_naming_modes() -> None:
    assert PeerNaming.parse("ip").name("app", "fd00::3") == "app@fd00::3"
    assert PeerNaming.parse("reverse").name("app", "10.0.0.1", "n1.example.") == "app@n1.example"
    assert PeerNaming.parse("{basename}@{ip}.svc").name("app", "10.0.0.1") == "app@10.0.0.1.svc"
    with pytest.raises(ConfigError):
        PeerNaming.parse("{nope}")


def test_rancher_containers_missing_fields_are_skipped() -> None:
    service = {"containers": [
        {"name": "a", "primary_ip": "10.42.0.1"},
        {"name": "b", "ips": ["10.42.0.2"]},
        {"name": "c"},
        {"name": "d", "primary_ip": None, "ips": None},
        {"name": "e", "primary_ip": "10.42.0.5", "state": "stopped"},
        "garbage",
    ]}
    assert container_addresses(service) == ["10.42.0.1", "10.42.0.2"]
    assert container_addresses({"name": "svc"}) == []


def test_file_lines_and_static() -> None:
    peers, bad = parse_lines("# c\napp@10.0.0.1\n10.0.0.2 extra\n\nnonsense\n", "app",
                             PeerNaming.parse("ip"))
    assert {p.name for p in peers} == {"app@10.0.0.1", "app@10.0.0.2"}
    assert bad == ["nonsense"]
    assert {p.name for p in run(StaticSource(f"{A},{B}").poll())} == {A, B}
    with pytest.raises(ConfigError):
        StaticSource("not-a-node")


def test_resolver_search_list_and_ndots() -> None:
    r = StubResolver([("10.0.0.1", 53)], search=[dns.name.from_text("svc.local")], ndots=2)
    assert [n.to_text() for n in r.candidates("tasks.app")] == ["tasks.app.svc.local.",
                                                                  "tasks.app."]
    assert [n.to_text() for n in r.candidates("a.b.c")] == ["a.b.c.", "a.b.c.svc.local."]
    assert [n.to_text() for n in r.candidates("x.")] == ["x."]
    assert parse_nameserver("[fd00::2]:5353") == ("fd00::2", 5353)
    assert parse_nameserver("fd00::2") == ("fd00::2", 53)


def test_config_lists_every_problem_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config({"interval": "-1", "listen": "nope", "ownership": "rendezvous"},
                    ["dns:", "bogus:x"], env={})
    problems = err.value.problems
    assert any("dns needs an argument" in p for p in problems)
    assert any("needs --basename" in p for p in problems)
    assert any("unknown kind 'bogus'" in p for p in problems)
    assert any("no cookie file" in p for p in problems)
    assert any("--interval" in p for p in problems)
    assert any("--listen" in p for p in problems)
    assert any("--agents-dns" in p for p in problems)


def test_config_precedence_flag_env_toml(tmp_path: Path) -> None:
    cookie = tmp_path / "c"
    cookie.write_text("secret")
    toml = tmp_path / "a.toml"
    toml.write_text('interval = 3.0\njitter = 0.2\n[[source]]\nkind = "dns"\narg = "tasks.x"\n'
                    'basename = "x"\n')
    cfg = load_config({"interval": None, "jitter": None}, [],
                      env={"BEAMFLEET_COOKIE_FILE": str(cookie), "BEAMFLEET_JITTER": "0.05"},
                      config_file=str(toml))
    assert cfg.interval == 3.0 and cfg.jitter == 0.05
    assert cfg.sources[0].basename == "x"
    cfg2 = load_config({"interval": 0.5}, [], env={"BEAMFLEET_COOKIE_FILE": str(cookie)},
                       config_file=str(toml))
    assert cfg2.interval == 0.5


def test_rendezvous_moves_only_the_vanished_agents_nodes() -> None:
    nodes = [f"app@10.0.1.{i}" for i in range(50)]
    agents = ["10.0.2.1", "10.0.2.2", "10.0.2.3"]
    before = {n: rendezvous_owner(n, agents) for n in nodes}
    after = {n: rendezvous_owner(n, agents[:2]) for n in nodes}
    assert {before[n] for n in nodes} == set(agents)
    for n in nodes:
        if before[n] != agents[2]:
            assert after[n] == before[n]


def test_metrics_text_format() -> None:
    m = Metrics()
    m.inc("beamfleet_agent_polls_total", source='dns:"x"')
    m.observe_convergence(0.3)
    text = m.render()
    assert 'beamfleet_agent_polls_total{source="dns:\\"x\\""} 1' in text
    assert 'beamfleet_agent_convergence_seconds_bucket{le="0.5"} 1' in text
    assert 'beamfleet_agent_convergence_seconds_bucket{le="0.25"} 0' in text
    assert "# TYPE beamfleet_agent_convergence_seconds histogram" in text
