"""Real ``beamfleet agent`` processes and netns-hosted BEAM nodes for the agent's tests and
the convergence benchmark.

- :func:`start_beam`: ``erl -name app@<host ip>`` in a host's namespace, with its own EPMD
  on 4369 there, recording every ``nodeup``/``nodedown`` it sees (:func:`node_events`).
- :class:`AgentProcess`: the real CLI as a subprocess, cookie in a 0400 file, JSON log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tests.support.erlang import Epmd, ErlNode, free_port, runtime, start_node
from tests.support.netns import Host

ROOT = Path(__file__).resolve().parents[2]
BEAMFLEET = str(ROOT / ".venv" / "bin" / "beamfleet")

# Every nodeup/nodedown the node sees, appended to $HOME/events.log (read after the fact,
# so even a 1 ms peer loss is caught).
EVENTS_EVAL = (
    "spawn(fun() -> ok = net_kernel:monitor_nodes(true), "
    "F = fun Loop() -> receive {E, N} -> "
    'file:write_file(filename:join(os:getenv("HOME"), "events.log"), '
    'io_lib:format("~p ~s~n", [E, N]), [append]), Loop() end end, F() end).'
)


def start_beam(
    host: Host, cookie: str, *, beam_flags: Sequence[str] = (), timeout: float = 30.0
) -> ErlNode:
    """``app@<host.ip4>`` (OTP 25) in ``host``'s namespace, with an EPMD of its own there."""
    ep = Epmd.start(port=4369, netns=host.name)
    try:
        node = start_node(
            runtime("otp25"),
            alive="app",
            host=host.ip4,
            cookie=cookie,
            epmd=ep,
            netns=host.name,
            timeout=timeout,
            extra_args=[*beam_flags, "-eval", EVENTS_EVAL],
        )
    except BaseException:
        ep.stop()
        raise
    node.owned_epmd = ep
    return node


def node_events(node: ErlNode) -> list[str]:
    """The node's ``nodeup X`` / ``nodedown X`` lines so far, oldest first."""
    path = node.home / "events.log"
    return path.read_text().splitlines() if path.exists() else []


class AgentProcess:
    """The real ``beamfleet agent`` CLI, in the root namespace or in ``netns``."""

    def __init__(
        self, *args: str, cookie: str, netns: str | None = None, port: int | None = None
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="beamfleet-agent-"))
        self.cookie_file = self.dir / "cookie"
        self.cookie_file.write_text(cookie + "\n")
        self.cookie_file.chmod(0o400)
        self.port = port or free_port()
        self.log = self.dir / "agent.log"
        self.netns = netns
        env = {**os.environ, "BEAMFLEET_COOKIE_FILE": str(self.cookie_file)}
        prefix = ["ip", "netns", "exec", netns] if netns else []
        listen = "0.0.0.0" if netns else "127.0.0.1"
        self.argv = [*prefix, BEAMFLEET, "agent", "--listen", f"{listen}:{self.port}", *args]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def lines(self) -> list[dict[str, object]]:
        """The agent's log, one dict per JSON line (``{"raw": line}`` for anything else)."""
        out: list[dict[str, object]] = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"raw": line})
        return out

    def get(self, path: str, host: str = "127.0.0.1") -> tuple[int, str]:
        """``GET path`` on the agent's listen port: (status, body); (0, "") when unreachable."""
        url = f"http://{host}:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def cpu_seconds(self) -> float:
        """User + system CPU time the agent has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        """The agent's resident set size in MiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> int:
        """SIGTERM (then SIGKILL after 10 s); the exit code."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode
