"""The agent's HTTP endpoint: ``/healthz``, ``/metrics``, ``/status`` (asyncio, no framework)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
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


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class HttpServer:
    """Serves GET on a fixed set of paths; one request per connection."""

    def __init__(self, routes: dict[str, Handler]) -> None:
        self._routes = routes
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, host, port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = line.decode("latin-1").split()
            if len(parts) < 2 or parts[0] != "GET":
                status, ctype, body = 405, "text/plain", "only GET\n"
            else:
                handler = self._routes.get(parts[1].split("?")[0])
                status, ctype, body = handler() if handler else (404, "text/plain", "not found\n")
            data = body.encode()
            writer.write(
                f"HTTP/1.0 {status} {_REASONS.get(status, '')}\r\nContent-Type: {ctype}"
                f"\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (OSError, TimeoutError, UnicodeDecodeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def json_body(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
