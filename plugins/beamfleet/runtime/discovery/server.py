"""The agent's HTTP endpoint (asyncio, no framework), bounded against slow or hostile clients."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from beamfleet.runtime.host_port import split_host_port

Handler = Callable[[], tuple[int, str, str]]  # -> (status, content type, body)


def parse_listen(text: str) -> tuple[str, int]:
    """``"0.0.0.0:9568"`` / ``"[::]:9568"`` -> (host, port); raises ValueError."""
    try:
        return split_host_port(text)
    except ValueError as exc:
        raise ValueError(
            f"--listen {text!r}: expected ADDR:PORT, e.g. 127.0.0.1:9568 or [::]:9568 ({exc})"
        ) from exc


_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class ServerLimits:
    """What one client may cost the agent; sized for probes and a Prometheus scraper.

    ``max_connections`` are served at once; one more evicts the oldest, so a flood of slow
    clients can delay nothing by more than ``request_timeout`` and a probe is always
    answered. A request must arrive whole within ``request_timeout`` (not per line: a
    client that sends one header a second is cut off all the same).
    """

    request_timeout: float = 2.0
    max_line: int = 8192
    max_headers: int = 64
    max_connections: int = 64


class RequestError(Exception):
    """A request that is answered with an error status and closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HttpServer:
    """Serves GET on a fixed set of paths; one request per connection.

    ``private`` paths are answered only to clients on loopback (403 otherwise): ``/status``
    lists the topology and the errors of every node, which the overlay need not see.
    """

    def __init__(
        self,
        routes: dict[str, Handler],
        *,
        private: frozenset[str] = frozenset(),
        limits: ServerLimits | None = None,
    ) -> None:
        self._routes = routes
        self._private = private
        self._limits = limits or ServerLimits()
        self._server: asyncio.Server | None = None
        # open connections, oldest first (dicts keep insertion order)
        self._open: dict[asyncio.StreamWriter, None] = {}

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(
            self._handle, host, port, limit=self._limits.max_line
        )

    @property
    def open_connections(self) -> int:
        return len(self._open)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open[writer] = None
        while len(self._open) > self._limits.max_connections:
            oldest = next(iter(self._open))
            self._open.pop(oldest)
            oldest.close()  # its handler sees the reset and ends
        try:
            try:
                path = await asyncio.wait_for(
                    self._read_request(reader), self._limits.request_timeout
                )
                status, ctype, body = self._answer(path, writer)
            except RequestError as exc:
                status, ctype, body = exc.status, "text/plain", f"{exc}\n"
            data = body.encode()
            writer.write(
                f"HTTP/1.0 {status} {_REASONS.get(status, '')}\r\nContent-Type: {ctype}"
                f"\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            await asyncio.wait_for(writer.drain(), self._limits.request_timeout)
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            self._open.pop(writer, None)
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), self._limits.request_timeout)

    async def _read_request(self, reader: asyncio.StreamReader) -> str:
        """The path of a GET request; headers are read (bounded) and ignored."""
        line = await self._read_line(reader)
        for _ in range(self._limits.max_headers + 1):
            if await self._read_line(reader) in (b"\r\n", b"\n", b""):
                break
        else:
            raise RequestError(431, f"more than {self._limits.max_headers} header lines")
        parts = line.decode("latin-1").split()
        if len(parts) < 2 or parts[0] != "GET":
            raise RequestError(405, "only GET")
        return parts[1].split("?")[0]

    async def _read_line(self, reader: asyncio.StreamReader) -> bytes:
        try:
            return await reader.readline()
        except ValueError as exc:  # the stream's limit: a line longer than max_line
            raise RequestError(431, f"a line longer than {self._limits.max_line} bytes") from exc

    def _answer(self, path: str, writer: asyncio.StreamWriter) -> tuple[int, str, str]:
        handler = self._routes.get(path)
        if handler is None:
            return 404, "text/plain", "not found\n"
        if path in self._private and not _from_loopback(writer):
            return 403, "text/plain", f"{path} is served on loopback only\n"
        return handler()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._open):
                writer.close()
            await self._server.wait_closed()


def _from_loopback(writer: asyncio.StreamWriter) -> bool:
    peer = writer.get_extra_info("peername")
    if not peer:
        return False
    try:
        address = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def json_body(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
