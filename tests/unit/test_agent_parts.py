"""The agent's parts on their own: source poller, link pool, status view, convergence clock."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

from beamfleet.runtime.discovery.convergence import ConvergenceClock
from beamfleet.runtime.discovery.errors import SourceError
from beamfleet.runtime.discovery.links import LinkPool
from beamfleet.runtime.discovery.log import JsonLog
from beamfleet.runtime.discovery.metrics import Metrics
from beamfleet.runtime.discovery.ownership import AllOwnership, RendezvousOwnership
from beamfleet.runtime.discovery.peers import Peer, PeerNaming
from beamfleet.runtime.discovery.poller import PollSettings, SourcePoller
from beamfleet.runtime.discovery.reconcile import (
    AbsenceTracker,
    NodeResult,
    ReconcileSettings,
)
from beamfleet.runtime.discovery.removals import Removals
from beamfleet.runtime.discovery.sources import (
    DnsSource,
    EpmdSource,
    FileSource,
    RancherSource,
    Source,
    SrvSource,
    StaticSource,
    StubResolver,
)
from beamfleet.runtime.discovery.sources.resolver import ResolverStats
from beamfleet.runtime.discovery.status import MeshState, StatusView
from beamfleet.runtime.erlang_dist import AuthenticationFailed
from tests.unit.test_discovery import A, B, C, FakeCluster, FakeLink, run


class ScriptedSource:
    """Answers from a script; the last answer repeats."""

    def __init__(
        self,
        answers: list[set[str] | Exception],
        *,
        basename: str | None = "app",
        empty_reason: str = "",
        stats: ResolverStats | None = None,
    ) -> None:
        self.label, self.basename = "fake", basename
        self.empty_reason, self.resolver_stats = empty_reason, stats
        self.answers = answers
        self.polls = 0

    async def poll(self) -> set[Peer]:
        self.polls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return {Peer(n) for n in answer}


def log_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def make_poller(
    source: ScriptedSource, clock: list[float], **settings: object
) -> tuple[SourcePoller, Metrics, io.StringIO]:
    metrics, out = Metrics(), io.StringIO()
    poller = SourcePoller(
        [source], PollSettings(**settings), metrics, JsonLog(out), clock=lambda: clock[0]
    )
    return poller, metrics, out


# ---- every source declares what the agent reads -------------------------------------------


def test_every_source_class_declares_the_protocol() -> None:
    resolver = StubResolver([("127.0.0.1", 53)])
    naming = PeerNaming.parse("ip")
    sources = [
        DnsSource("tasks.app", basename="app", resolver=resolver, naming=naming),
        SrvSource("_e._tcp.app", basename="app", resolver=resolver, naming=naming),
        RancherSource(basename="app", naming=naming),
        StaticSource("app@10.0.0.1"),
        FileSource("/nonexistent", basename="app", naming=naming),
        EpmdSource("10.0.0.1", basename="app"),
    ]
    for s in sources:
        assert isinstance(s, Source)
        assert s.empty_reason == ""
    # the DNS-backed sources expose their resolver's live counters, the others none
    assert [s.resolver_stats is resolver.stats for s in sources[:2]] == [True, True]
    assert [s.resolver_stats for s in sources[2:]] == [None] * 4
    assert AllOwnership().agents is None
    assert RendezvousOwnership("tasks.agent", resolver=resolver, port=1).agents == []


# ---- poller ----------------------------------------------------------------------------------


def test_poller_keeps_the_last_good_set_and_backs_off_a_failing_source() -> None:
    fail = SourceError("fake", "SERVFAIL")
    source = ScriptedSource([{A, B}, fail, fail, fail, {A}])
    clock = [0.0]
    poller, metrics, out = make_poller(source, clock, interval=1.0, backoff_max=3.0)

    first = run(poller.poll())
    assert first.desired == {A, B} and first.complete
    due = []
    for _ in range(3):
        answer = run(poller.poll())
        assert answer.desired == {A, B} and not answer.complete  # the last good set
        due.append(poller.states[0].next_due - clock[0])
        clock[0] = poller.states[0].next_due
    assert due == [1.0, 2.0, 3.0]  # doubling, capped at backoff_max
    assert metrics.get("beamfleet_agent_poll_errors_total", source="fake") == 3
    # the same error is logged once, not on every retry
    assert [e["event"] for e in log_lines(out)].count("source_failed") == 1
    recovered = run(poller.poll())
    assert recovered.desired == {A} and recovered.complete
    assert poller.states[0].failures == 0 and poller.states[0].error == ""


def test_poller_skips_a_source_that_is_not_due() -> None:
    source = ScriptedSource([SourceError("fake", "down"), {A}])
    clock = [0.0]
    poller, _, _ = make_poller(source, clock, interval=5.0)
    run(poller.poll())
    clock[0] = 4.0
    answer = run(poller.poll())
    assert source.polls == 1 and not answer.complete and answer.desired == set()


def test_poller_refuses_an_empty_answer_with_the_sources_reason() -> None:
    source = ScriptedSource([{A}, set()], empty_reason="tasks.app has no A/AAAA record")
    clock = [0.0]
    poller, _, out = make_poller(source, clock)
    run(poller.poll())
    answer = run(poller.poll())
    assert answer.desired == {A} and not answer.complete
    failed = [e for e in log_lines(out) if e["event"] == "source_failed"]
    assert "tasks.app has no A/AAAA record" in str(failed[0]["error"])

    allowing, _, _ = make_poller(ScriptedSource([set()]), [0.0], allow_empty=True)
    accepted = run(allowing.poll())
    assert accepted.desired == set() and accepted.complete


def test_poller_reports_the_resolvers_tcp_retries_and_the_managed_names() -> None:
    stats = ResolverStats(tcp_retries=4)
    poller, metrics, _ = make_poller(ScriptedSource([{A}], stats=stats), [0.0])
    run(poller.poll())
    assert metrics.get("beamfleet_agent_dns_tcp_retries_total", source="fake") == 4
    assert poller.managed("app@10.9.9.9") and not poller.managed("remsh@10.0.0.1")

    full_names, _, _ = make_poller(ScriptedSource([{"web@h1"}], basename=None), [0.0])
    assert not full_names.managed("web@h2")  # nothing answered yet
    run(full_names.poll())
    assert full_names.managed("web@h2") and not full_names.managed("app@h1")


# ---- link pool -------------------------------------------------------------------------------


def make_pool(cluster: FakeCluster, **kw: object) -> tuple[LinkPool, io.StringIO, list[int]]:
    out, lost = io.StringIO(), [0]

    def on_lost() -> None:
        lost[0] += 1

    pool = LinkPool(
        cluster.connect, JsonLog(out), connect_timeout=1.0, round_wait=0.2, on_lost=on_lost, **kw
    )
    return pool, out, lost


def test_link_pool_connects_owned_nodes_and_logs_a_failure_once() -> None:
    cluster = FakeCluster([A, B], bad_cookie={B})
    pool, out, _ = make_pool(cluster)

    async def go() -> dict[str, FakeLink]:
        await pool.open({A, B})
        return await pool.open({A, B})

    live = run(go())
    assert set(live) == {A}
    assert pool.reachable(A) and not pool.reachable(B)
    assert "cookie" in pool.error(B).lower()
    assert [e["event"] for e in log_lines(out)].count("node_unreachable") == 1


def test_link_pool_logs_a_wrong_cookie_once_while_the_client_fails_fast() -> None:
    """After an authentication failure the client fails fast (with ``retry_after`` in
    its message) until its backoff ends: that is the same failure, not a new one."""
    attempts = [0]

    async def connector(node: str) -> Any:
        attempts[0] += 1
        raise AuthenticationFailed(node, retry_after=None if attempts[0] == 1 else 0.5)

    out = io.StringIO()
    pool = LinkPool(connector, JsonLog(out), connect_timeout=1.0, round_wait=0.2,
                    on_lost=lambda: None)
    for _ in range(4):
        run(pool.open({A}))
    logged = [json.loads(line) for line in out.getvalue().splitlines()]
    assert attempts[0] == 4
    assert [e["event"] for e in logged] == ["node_unreachable"]
    assert "retried in" not in logged[0]["error"]
    assert pool.error(A) == logged[0]["error"]


def test_link_pool_leaves_a_black_hole_connecting_without_starting_a_second_connect() -> None:
    started: list[str] = []
    cluster = FakeCluster([A, B])

    async def connector(node: str) -> FakeLink:
        started.append(node)
        if node == B:
            await asyncio.sleep(3600)
        return cluster.link(node)

    async def go() -> tuple[set[str], set[str]]:
        pool = LinkPool(connector, JsonLog(io.StringIO()), connect_timeout=60.0, round_wait=0.05)
        first = set(await pool.open({A, B}))
        second = set(await pool.open({A, B}))
        await pool.close_all()
        return first, second

    first, second = run(go())
    assert first == second == {A}
    assert started.count(B) == 1 and started.count(A) == 1


def test_link_pool_closes_unowned_links_and_reports_lost_ones() -> None:
    cluster = FakeCluster([A, B])
    pool, out, lost = make_pool(cluster)

    async def go() -> tuple[FakeLink, FakeLink]:
        live = await pool.open({A, B})
        await pool.close_except({A})  # B is owned by someone else now: closed on purpose
        await live[A].close()  # A's connection drops by itself
        deadline = asyncio.get_running_loop().time() + 5
        while lost[0] == 0 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        return live[A], live[B]

    link_a, link_b = run(go())
    assert link_b.closed and B not in pool
    assert link_a.closed and A in pool
    assert lost == [1]  # only the unexpected loss wakes the agent
    events = [e for e in log_lines(out) if e["event"] == "node_connection_lost"]
    assert [e["node"] for e in events] == [A]


# ---- status view -----------------------------------------------------------------------------


def make_view(clock: list[float], cluster: FakeCluster) -> tuple[StatusView, MeshState, LinkPool]:
    mesh = MeshState()
    poller, metrics, _ = make_poller(ScriptedSource([{A, B}]), clock)
    pool, _, _ = make_pool(cluster)
    removals = Removals(
        AbsenceTracker(),
        cluster.connect,
        poller.managed,
        ReconcileSettings(),
        metrics=metrics,
        log=JsonLog(io.StringIO()),
        round_wait=0.1,
    )
    view = StatusView(
        mesh,
        poller=poller,
        links=pool,
        ownership=AllOwnership(),
        removals=removals,
        metrics=metrics,
        interval=2.0,
        clock=lambda: clock[0],
    )
    return view, mesh, pool


def test_status_view_health_verdicts_and_routes() -> None:
    clock = [100.0]
    cluster = FakeCluster([A, B], bad_cookie={B})
    view, mesh, pool = make_view(clock, cluster)
    assert view.healthy() == (False, "no successful poll yet")
    assert view.routes()["/healthz"]()[0] == 503

    run(pool.open({A, B}))
    mesh.desired, mesh.owned, mesh.last_success = {A, B, C}, {A, B}, 100.0
    mesh.results[A] = NodeResult(A, visible={B}, failed={C: "timed out"})
    assert view.healthy() == (False, f"owned node(s) unreachable: {B}")

    mesh.owned = {A}
    assert view.healthy() == (True, "ok")
    code, ctype, body = view.routes()["/healthz"]()
    assert (code, ctype, body) == (200, "text/plain", "ok\n")

    clock[0] = 111.0  # 5 intervals of 2 s is 10 s
    ok, reason = view.healthy()
    assert not ok and "11.0 s ago (> 10 s)" in reason


def test_liveness_is_not_readiness() -> None:
    """An unreachable owned node makes the agent not ready, never not live: restarting
    the agent cannot bring a node back, and a restart loop keeps the mesh from forming."""
    clock = [100.0]
    cluster = FakeCluster([A, B], bad_cookie={B})
    view, mesh, pool = make_view(clock, cluster)
    routes = view.routes()
    assert routes["/livez"]()[0] == 200  # just started, no round yet
    run(pool.open({A, B}))
    mesh.desired, mesh.owned, mesh.last_success, mesh.last_round = {A, B}, {A, B}, 100.0, 100.0
    assert routes["/readyz"]()[0] == 503 and routes["/livez"]()[0] == 200

    clock[0] = 125.0  # rounds keep ending, but none complete: not ready, still live
    mesh.last_round = 124.0
    assert routes["/readyz"]()[0] == 503 and routes["/livez"]()[0] == 200

    clock[0] = 160.0  # no round has ended for 36 s (> max(30 s, 10 intervals)): stuck
    code, _, body = routes["/livez"]()
    assert code == 503 and "the loop is stuck" in body


def test_status_report_lists_nodes_sources_and_ownership() -> None:
    clock = [10.0]
    view, mesh, pool = make_view(clock, FakeCluster([A, B]))
    run(pool.open({A}))
    mesh.desired, mesh.owned, mesh.last_success = {A, B, C}, {A}, 9.5
    mesh.results[A] = NodeResult(A, visible={B}, failed={C: "timed out"})
    report = json.loads(view.routes()["/status"]()[2])
    assert report["healthy"] is True and report["ownership"] == "all"
    assert report["agents"] is None and report["last_success_age"] == 0.5
    assert report["owned"][A] == {
        "reachable": True,
        "error": "",
        "connected": [B],
        "missing": [C],
        "connect_failures": {C: "timed out"},
    }
    assert report["sources"] == [{"source": "fake", "ok": True, "error": "", "peers": None}]


# ---- convergence clock ------------------------------------------------------------------------


def test_convergence_is_measured_once_per_peer_from_when_it_became_desired() -> None:
    clock = ConvergenceClock()
    clock.desired({A, B}, 0.0)
    clock.desired({A, B, C}, 1.0)
    assert clock.converged([], 2.0) == []  # no reachable owned node: nothing judged
    seen_by_all = [NodeResult(A, visible={B, C}), NodeResult(B, visible={A})]
    assert clock.converged(seen_by_all, 2.5) == [2.5, 2.5]  # A and B; C is not seen by B
    assert clock.converged([NodeResult(A, visible={B, C}), NodeResult(B, visible={A, C})], 4.0) == [
        3.0
    ]  # C, desired since 1.0
    assert clock.converged([NodeResult(A, visible={B, C})], 5.0) == []  # each only once
    clock.desired({A, B}, 6.0)  # C leaves and comes back: its clock restarts
    clock.desired({A, B, C}, 7.0)
    assert clock.converged([NodeResult(A, visible={B, C})], 7.5) == [0.5]
