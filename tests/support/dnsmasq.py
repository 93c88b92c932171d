"""A real dnsmasq (Debian dnsmasq-base) serving A/AAAA (and SRV) records for tests.

Example::

    dns = Dnsmasq(listen="10.231.0.1", netns=None, domain="test")
    dns.set_records({"app.test": ["10.231.1.2", "10.231.1.3"]})   # writes addn-hosts + SIGHUP
    dns.start(); dns.stop(); dns.start()                           # outage and recovery
    dns.close()

Records live in an addn-hosts file that dnsmasq re-reads on SIGHUP; names under
``domain`` that are not listed answer NXDOMAIN (``--local``), never forwarded anywhere.
SRV records are given at start (dnsmasq does not reload them on SIGHUP).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode


class Dnsmasq:
    def __init__(self, *, listen: str, netns: str | None = None, domain: str = "test",
                 port: int = 53, srv: list[str] | None = None) -> None:
        self.listen = listen
        self.port = port
        self.netns = netns
        self.domain = domain
        self.srv = srv or []
        self.dir = Path(tempfile.mkdtemp(prefix="beamfleet-dnsmasq-"))
        self.dir.chmod(0o755)
        self.hosts = self.dir / "hosts"
        self.hosts.write_text("")
        self.hosts.chmod(0o644)
        self.proc: subprocess.Popen[bytes] | None = None

    def _argv(self) -> list[str]:
        args = [shutil.which("dnsmasq") or "/usr/sbin/dnsmasq", "--keep-in-foreground",
                "--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--user=root",
                f"--addn-hosts={self.hosts}", f"--listen-address={self.listen}",
                "--bind-interfaces", f"--port={self.port}", f"--local=/{self.domain}/",
                "--pid-file=", "--local-ttl=0", "--log-facility=" + str(self.dir / "log"),
                "--log-queries"]
        args += [f"--srv-host={s}" for s in self.srv]
        return (["ip", "netns", "exec", self.netns] if self.netns else []) + args

    def start(self, timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "stderr", "ab"),  # noqa: SIM115
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dnsmasq exited: {(self.dir / 'stderr').read_text()}")
            if self.answers():
                return
            time.sleep(0.05)
        raise TimeoutError("dnsmasq did not answer")

    def answers(self) -> bool:
        """True when a query for a name under the domain gets any DNS answer."""
        q = dns.message.make_query(f"probe.{self.domain}", "A")
        try:
            r = dns.query.udp(q, self.listen, timeout=0.3, port=self.port)
        except (OSError, dns.exception.Timeout):
            return False
        return r.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)

    def set_records(self, records: dict[str, list[str]]) -> None:
        """Replace all A/AAAA records (name -> addresses) and make dnsmasq reload them."""
        lines = [f"{ip} {name}" for name, ips in records.items() for ip in ips]
        tmp = self.hosts.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.chmod(0o644)
        os.replace(tmp, self.hosts)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)
            self._wait_reload(records)

    def _wait_reload(self, records: dict[str, list[str]], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        name, ips = next(iter(records.items()), ("", []))
        while name and time.monotonic() < deadline:
            q = dns.message.make_query(name, "AAAA" if ips and ":" in ips[0] else "A")
            with contextlib.suppress(OSError, dns.exception.Timeout):
                r = dns.query.tcp(q, self.listen, timeout=1, port=self.port)
                got = {x.to_text() for rr in r.answer for x in rr}
                if got >= {ip for ip in ips if (":" in ip) == (":" in ips[0])}:
                    return
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None

    def queries(self, name: str) -> tuple[int, int]:
        """(over UDP, over TCP) queries logged for ``name``.

        dnsmasq answers TCP in a forked child, so a query logged under another pid than
        the main process's came over TCP.
        """
        log = self.dir / "log"
        main = f"dnsmasq[{self.proc.pid}]" if self.proc else "dnsmasq[?]"
        udp = tcp = 0
        for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
            if "query[" in line and f" {name} from" in line:
                if main in line:
                    udp += 1
                else:
                    tcp += 1
        return udp, tcp

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
