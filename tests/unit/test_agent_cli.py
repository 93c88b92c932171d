"""`beamfleet agent` / `beamfleet status` command-line behaviour (no nodes needed)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from click.testing import CliRunner

from beamfleet.runtime.cli import main
from beamfleet.runtime.discovery.settings import SETTINGS
from beamfleet.runtime.discovery.sources import REGISTRY


def test_agent_reports_every_config_problem_without_traceback() -> None:
    result = CliRunner().invoke(
        main,
        ["agent", "--source", "dns:", "--source", "nope:x", "--interval", "0"],
        env={"BEAMFLEET_COOKIE_FILE": ""},
    )
    assert result.exit_code == 1
    out = result.output
    assert "dns needs an argument" in out
    assert "unknown kind 'nope'" in out
    assert "no cookie file" in out
    assert "--interval must be >= 0.05" in out
    assert "Traceback" not in out


def test_agent_cookie_only_from_a_file(tmp_path: Path) -> None:
    empty = tmp_path / "cookie"
    empty.write_text("")
    result = CliRunner().invoke(
        main, ["agent", "--source", "static:a@10.0.0.1", "--cookie-file", str(empty)]
    )
    assert result.exit_code == 1
    assert str(empty) in result.output
    assert "--cookie " not in CliRunner().invoke(main, ["agent", "--help"]).output


def test_agent_help_lists_every_setting_and_every_peer_source_kind() -> None:
    result = CliRunner().invoke(main, ["agent", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())  # undo click's line wrapping
    for s in SETTINGS:
        assert s.flag in text, s.flag
        assert s.env in text, s.env
    for kind in REGISTRY.values():
        assert kind.usage in text, kind.kind
    assert "Connects in flight per node (default 16, env BEAMFLEET_MAX_PARALLEL)." in text


def test_agent_settings_from_the_environment_are_validated(tmp_path: Path) -> None:
    cookie = tmp_path / "cookie"
    cookie.write_text("x")
    result = CliRunner().invoke(
        main,
        ["agent", "--source", "dns:tasks.app"],
        env={"BEAMFLEET_COOKIE_FILE": str(cookie), "BEAMFLEET_GRACE_POLLS": "0"},
    )
    assert result.exit_code == 1
    assert "--grace-polls must be >= 1, got 0" in result.output
    assert "needs --basename" in result.output
    assert "Traceback" not in result.output


def _serve(payload: dict[str, object]) -> tuple[HTTPServer, int]:
    body = json.dumps(payload).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def test_status_prints_the_agent_state_and_exits_by_health() -> None:
    state = {
        "healthy": False,
        "reason": "owned node(s) unreachable: app@10.0.0.2",
        "ownership": "all",
        "desired": ["app@10.0.0.1", "app@10.0.0.2"],
        "last_success_age": 0.4,
        "pending_removal": {"app@10.0.0.9": 3.0},
        "sources": [{"source": "dns:tasks.app", "ok": True, "error": "", "peers": 2}],
        "owned": {
            "app@10.0.0.2": {
                "reachable": False,
                "error": "cookies differ",
                "connected": [],
                "missing": ["app@10.0.0.1"],
            }
        },
    }
    server, port = _serve(state)
    try:
        result = CliRunner().invoke(main, ["status", "--listen", f"127.0.0.1:{port}"])
    finally:
        server.shutdown()
    assert result.exit_code == 1
    assert "healthy: False" in result.output
    assert "UNREACHABLE: cookies differ" in result.output
    assert "pending removal: app@10.0.0.9" in result.output


def test_status_without_agent_exits_2() -> None:
    server = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()  # nothing listens there any more
    result = CliRunner().invoke(main, ["status", "--listen", f"127.0.0.1:{port}"])
    assert result.exit_code == 2
    assert "no agent answered" in result.output
