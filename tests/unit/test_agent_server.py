"""The agent's HTTP server against slow and hostile clients, on real loopback sockets.

A held connection must never stop a probe: 200 clients that never finish their request
are open while ``/livez`` is asked for, and it answers in well under 100 ms. Oversized
lines and header floods get a 431, not an unhandled exception, and ``/status`` can be
kept to loopback.
"""

from __future__ import annotations

import asyncio
import sys
import time
from types import SimpleNamespace
from typing import Any

import pytest

from beamfleet.controller.deploys.agent import AgentSettings, agent_spec
from beamfleet.controller.deploys.app import AppSettings
from beamfleet.runtime.discovery.server import HttpServer, ServerLimits, _from_loopback


def routes() -> dict[str, Any]:
    return {
        "/livez": lambda: (200, "text/plain", "ok\n"),
        "/status": lambda: (200, "application/json", "{}\n"),
    }


async def get(port: int, request: bytes) -> tuple[int, bytes, float]:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    elapsed = time.perf_counter() - started
    status = int(data.split()[1]) if data else 0
    return status, data, elapsed


async def started(limits: ServerLimits | None = None) -> tuple[HttpServer, int]:
    server = HttpServer(routes(), private=frozenset({"/status"}), limits=limits)
    await server.start("127.0.0.1", 0)
    assert server._server is not None
    port = server._server.sockets[0].getsockname()[1]
    return server, port


def test_livez_answers_fast_with_200_slow_clients_held_open() -> None:
    async def scenario() -> tuple[int, float, int]:
        server, port = await started()
        slow = []
        for _ in range(200):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /livez HTTP/1.0\r\nX-Slow: ")  # never finished
            slow.append(writer)
        await asyncio.sleep(0)  # let the server accept them
        deadline = time.monotonic() + 5
        while server.open_connections < ServerLimits().max_connections:
            assert time.monotonic() < deadline, "the server did not accept the slow clients"
            await asyncio.sleep(0.01)
        status, _, elapsed = await get(port, b"GET /livez HTTP/1.0\r\n\r\n")
        held = server.open_connections
        for writer in slow:
            writer.close()
        await server.close()
        return status, elapsed, held

    status, elapsed, held = asyncio.run(scenario())
    assert status == 200
    assert elapsed < 0.1, f"/livez took {elapsed * 1000:.0f} ms behind 200 slow clients"
    assert held <= ServerLimits().max_connections


def test_a_request_that_never_ends_is_cut_off_at_the_deadline() -> None:
    async def scenario() -> tuple[bytes, float]:
        server, port = await started(ServerLimits(request_timeout=0.3))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        began = time.perf_counter()
        for _ in range(20):  # one header line every 0.1 s: each line is "on time"
            if reader.at_eof():
                break
            try:
                writer.write(b"X-Drip: 1\r\n")
                await writer.drain()
            except ConnectionError:
                break  # the server hung up on us, as it should
            await asyncio.sleep(0.1)
        try:
            data = await asyncio.wait_for(reader.read(), 5)
        except ConnectionError:
            data = b""
        elapsed = time.perf_counter() - began
        writer.close()
        await server.close()
        return data, elapsed

    data, elapsed = asyncio.run(scenario())
    assert data == b""  # closed without an answer
    assert elapsed < 1.5


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /" + b"a" * 100_000 + b" HTTP/1.0\r\n\r\n", 431),
        (b"GET /livez HTTP/1.0\r\n" + b"X-H: 1\r\n" * 100 + b"\r\n", 431),
        (b"POST /livez HTTP/1.0\r\n\r\n", 405),
        (b"GET /nope HTTP/1.0\r\n\r\n", 404),
        (b"GET /livez HTTP/1.0\r\nHost: x\r\n\r\n", 200),
        (b"GET /status HTTP/1.0\r\n\r\n", 200),  # from loopback
    ],
    ids=["100KB-line", "100-headers", "post", "unknown-path", "ok", "status-on-loopback"],
)
def test_bad_requests_get_an_error_status_not_an_exception(
    request_bytes: bytes, status: int
) -> None:
    async def scenario() -> int:
        server, port = await started()
        code, _, _ = await get(port, request_bytes)
        # the server still serves after the bad request
        after, _, _ = await get(port, b"GET /livez HTTP/1.0\r\n\r\n")
        await server.close()
        assert after == 200
        return code

    assert asyncio.run(scenario()) == status


@pytest.mark.parametrize(
    ("peer", "loopback"),
    [
        (("127.0.0.1", 5000), True),
        (("::1", 5000, 0, 0), True),
        (("::ffff:127.0.0.1", 5000, 0, 0), True),
        (("10.0.0.5", 5000), False),
        (("fd00::5", 5000, 0, 0), False),
        (None, False),
    ],
)
def test_private_paths_are_for_loopback_clients_only(peer: Any, loopback: bool) -> None:
    writer = SimpleNamespace(get_extra_info=lambda name: peer)
    assert _from_loopback(writer) is loopback  # type: ignore[arg-type]


@pytest.mark.parametrize(("answer", "exit_code"), [(200, 0), (503, 1)])
def test_the_swarm_healthcheck_asks_livez_and_reads_its_status(answer: int, exit_code: int) -> None:
    """The agent service's healthcheck command, run as Docker runs it, against a server."""
    async def scenario() -> int:
        server = HttpServer({"/livez": lambda: (answer, "text/plain", "x\n")})
        await server.start("127.0.0.1", 0)
        assert server._server is not None
        port = server._server.sockets[0].getsockname()[1]
        spec: Any = agent_spec(AppSettings(name="demo"), AgentSettings(port=port), "c.v1")
        test = spec["TaskTemplate"]["ContainerSpec"]["Healthcheck"]["Test"]
        assert test[:2] == ["CMD", "python3"]
        proc = await asyncio.create_subprocess_exec(sys.executable, *test[2:])
        code = await asyncio.wait_for(proc.wait(), 10)
        await server.close()
        return code

    assert asyncio.run(scenario()) == exit_code
