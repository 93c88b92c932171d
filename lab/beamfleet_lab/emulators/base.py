"""The common frame of every metadata-API emulator: a stdlib HTTP server on loopback.

An emulator binds ``127.0.0.1`` on an ephemeral port, serves from a background thread and
is stopped by :meth:`MetadataEmulator.stop` or by leaving its ``with`` block::

    with AwsImdsEmulator(local_ipv4="10.230.9.7") as imds:
        os.environ["BEAMFLEET_METADATA_URL_AWS"] = imds.url

Subclasses answer in :meth:`MetadataEmulator.respond`; this class adds what every test
needs: the request log (to assert which headers a client really sent) and fault
injection (``fail_next`` for transient errors a client must retry through, ``set_fault``
for an outage that lasts until cleared).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Request:
    """One request as the emulator saw it (header names lower-cased)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Response:
    """What the emulator answers: status, body and extra headers."""

    status: int
    body: bytes | str = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    def payload(self) -> bytes:
        return self.body.encode() if isinstance(self.body, str) else self.body


class MetadataEmulator:
    """Base class: lifecycle, request log and fault injection; subclasses implement respond."""

    #: a short provider name, used in ``repr`` and in emulator error bodies
    provider = "metadata"
    #: where to listen; loopback by default. A test that owns another address (e.g. a
    #: bridge it created for a namespace) may set it on the instance before ``start()``.
    bind_address = "127.0.0.1"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._fail_next: list[int] = []
        self._fault: int | None = None
        self.requests: list[Request] = []

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> Self:
        """Bind ``bind_address`` (127.0.0.1) on a free port and serve in a daemon thread."""
        if self._server is not None:
            return self
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                response = emulator._dispatch(request)
                payload = response.payload()
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_HEAD = _serve

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the request log is kept in ``emulator.requests`` instead."""

        self._server = ThreadingHTTPServer((self.bind_address, 0), Handler)
        self._server.daemon_threads = True
        # a short poll interval keeps stop() fast (shutdown waits for the loop to notice)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.provider}-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{self.provider} emulator is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123`` (no trailing slash)."""
        return f"http://{self.bind_address}:{self.port}"

    # -- fault injection -------------------------------------------------------------
    def fail_next(self, count: int = 1, status: int = 503) -> None:
        """Answer the next ``count`` requests with ``status`` (a transient failure)."""
        with self._lock:
            self._fail_next.extend([status] * count)

    def set_fault(self, status: int | None) -> None:
        """Answer every request with ``status`` until called again with ``None``."""
        with self._lock:
            self._fault = status

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- dispatch --------------------------------------------------------------------
    def _dispatch(self, request: Request) -> Response:
        with self._lock:
            self.requests.append(request)
            injected = self._fail_next.pop(0) if self._fail_next else self._fault
        if injected is not None:
            return Response(injected, f"{self.provider} emulator: injected fault {injected}\n")
        try:
            return self.respond(request)
        except Exception as exc:  # an emulator bug must show up as a 500, not a hang
            return Response(500, f"{self.provider} emulator error: {exc!r}\n")

    def respond(self, request: Request) -> Response:
        """Answer one request; overridden by each provider's emulator."""
        raise NotImplementedError


def not_found(text: str = "Not Found\n") -> Response:
    return Response(404, text)
