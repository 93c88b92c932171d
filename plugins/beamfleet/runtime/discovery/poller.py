"""Polling the sources: each on its own schedule, with backoff, keeping its last good answer.

A source that fails (or answers empty without ``--allow-empty``) must never shrink the
cluster, so the poller keeps each source's last good set and only reports a round as
*complete* when every source answered; the agent counts only complete rounds towards
removing a departed peer.

Example::

    poller = SourcePoller(sources, PollSettings.from_config(config), metrics, log)
    answer = await poller.poll()
    answer.desired      # {"app@10.0.0.1", ...}: the union of the last good sets
    answer.complete     # True when every source answered this round
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from beamfleet.runtime.discovery.config import AgentConfig
from beamfleet.runtime.discovery.errors import SourceError
from beamfleet.runtime.discovery.log import JsonLog
from beamfleet.runtime.discovery.metrics import Metrics
from beamfleet.runtime.discovery.peers import Peer
from beamfleet.runtime.discovery.reconcile import alive_of
from beamfleet.runtime.discovery.sources.base import Source


@dataclass(frozen=True)
class PollSettings:
    """How sources are polled.

    Args:
        interval: the agent's poll interval; also the first backoff step of a failing source.
        backoff_max: cap of a failing source's backoff (it doubles per failure up to this).
        timeout: one poll's limit; a source hanging longer counts as failed.
        allow_empty: accept an empty answer as "no peers" instead of refusing it.
    """

    interval: float = 1.0
    backoff_max: float = 10.0
    timeout: float = 7.0
    allow_empty: bool = False

    @classmethod
    def from_config(cls, config: AgentConfig) -> PollSettings:
        # a source may make a few DNS queries in a row (A, AAAA, then PTR): allow three
        return cls(
            interval=config.interval,
            backoff_max=config.backoff_max,
            timeout=config.dns_timeout * 3 + 1,
            allow_empty=config.allow_empty,
        )


@dataclass
class SourceState:
    """The last good answer of one source, and its backoff."""

    source: Source
    last_good: set[Peer] | None = None
    error: str = ""
    failures: int = 0
    next_due: float = 0.0


@dataclass(frozen=True)
class PollAnswer:
    """What one round of polls gave.

    ``desired`` is the union of every source's last good set (a failing source keeps
    contributing its last good answer); ``complete`` is True only when every source
    answered this round, the only kind of round that may bring a removal closer.
    """

    desired: set[str]
    complete: bool


class SourcePoller:
    """Polls every due source at once, backs off the failing ones, keeps the last good sets."""

    def __init__(
        self,
        sources: list[Source],
        settings: PollSettings,
        metrics: Metrics,
        log: JsonLog,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.states = [SourceState(s) for s in sources]
        self.settings = settings
        self._metrics = metrics
        self._log = log
        self._clock = clock

    @property
    def labels(self) -> list[str]:
        return [st.source.label for st in self.states]

    async def poll(self) -> PollAnswer:
        """Poll the sources that are due (all of them, unless backing off)."""
        now = self._clock()
        oks = await asyncio.gather(*(self._poll_one(st, now) for st in self.states))
        complete = all(oks) and all(st.last_good is not None for st in self.states)
        desired = {p.name for st in self.states for p in (st.last_good or ())}
        return PollAnswer(desired, complete)

    def managed(self, node: str) -> bool:
        """Peers the agent may connect or remove: the alive names its sources give.

        A console (``remsh@...``) or another application's node on the same hosts is
        never touched.
        """
        return alive_of(node) in self._managed_alive()

    def _managed_alive(self) -> set[str]:
        out = {st.source.basename for st in self.states if st.source.basename}
        for st in self.states:
            # sources giving full names: their alive names are whatever they answered
            if st.source.basename is None and st.last_good:
                out |= {p.alive for p in st.last_good}
        return out

    async def _poll_one(self, st: SourceState, now: float) -> bool:
        """One poll of one source; True when it gave a good answer this round."""
        label = st.source.label
        if now < st.next_due:
            return False
        self._metrics.inc("beamfleet_agent_polls_total", source=label)
        try:
            peers = await asyncio.wait_for(st.source.poll(), self.settings.timeout)
            if not peers and not self.settings.allow_empty:
                reason = st.source.empty_reason or "empty answer"
                raise SourceError(
                    label,
                    f"{reason}; keeping the last good set (--allow-empty to accept empty answers)",
                )
        except (SourceError, TimeoutError) as exc:
            self._failed(st, str(exc) or f"source {label}: timed out", now)
            return False
        if st.error or st.last_good != peers:
            self._log.info(
                "source_answer", source=label, peers=len(peers), recovered=bool(st.error)
            )
        st.last_good, st.error, st.failures, st.next_due = peers, "", 0, 0.0
        self._metrics.set("beamfleet_agent_source_peers", len(peers), source=label)
        stats = st.source.resolver_stats
        if stats is not None:
            self._metrics.set(
                "beamfleet_agent_dns_tcp_retries_total", stats.tcp_retries, source=label
            )
        return True

    def _failed(self, st: SourceState, error: str, now: float) -> None:
        """Back off exponentially, and log a failure only when its message changes."""
        label = st.source.label
        st.failures += 1
        st.next_due = now + min(
            self.settings.backoff_max, self.settings.interval * 2 ** (st.failures - 1)
        )
        self._metrics.inc("beamfleet_agent_poll_errors_total", source=label)
        if error != st.error:
            self._log.warning(
                "source_failed", source=label, error=error, retry_in=round(st.next_due - now, 2)
            )
        st.error = error
