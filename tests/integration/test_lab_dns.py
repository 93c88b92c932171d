"""The lab's DNS server for real: the lab's own dnsmasq launcher, on a loopback address.

No Docker lab: the server the lab starts on its bridge gateway is started here on a free
127.x address and port, with an upstream that is another real dnsmasq on loopback (so the
forwarding of non-lab names is checked without leaving this machine). Records change
the way the lab changes them (rewriting the hosts file) and are polled for with a deadline.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from beamfleet_lab.dns import DnsServer, lab_domain, record_name, render_hosts
from beamfleet_lab.errors import DnsServerError
from tests.support.dnsmasq import Dnsmasq, port_free

LAB = "dnstest"
HOSTS = [("host1", "10.232.9.11"), ("host2", "10.232.9.12")]
MIRROR = ("mirror.upstream.test", "192.0.2.7")


def free_loopback() -> tuple[str, int]:
    rng = random.SystemRandom()
    for _ in range(50):
        address = f"127.{rng.randint(1, 254)}.{rng.randint(0, 254)}.{rng.randint(1, 254)}"
        port = rng.randint(20000, 60000)
        if port_free(address, port):
            return address, port
    raise RuntimeError("no free loopback address and port found")


@pytest.fixture
def upstream() -> Iterator[Dnsmasq]:
    address, port = free_loopback()
    server = Dnsmasq(listen=address, port=port, domain="upstream.test")
    server.set_records({MIRROR[0]: [MIRROR[1]]})
    server.start()
    yield server
    server.close()


@pytest.fixture
def lab_dns(tmp_path: Path, upstream: Dnsmasq) -> Iterator[DnsServer]:
    address, port = free_loopback()
    server = DnsServer(
        tmp_path / "dns",
        listen=address,
        port=port,
        domain=lab_domain(LAB),
        upstream=[f"{upstream.listen}#{upstream.port}"],
    )
    server.write_hosts(render_hosts(LAB, HOSTS))
    assert server.ensure_running() is True
    yield server
    server.stop()


def ask(server: DnsServer, name: str, port: int | None = None) -> dns.message.Message:
    query = dns.message.make_query(name, "A")
    return dns.query.udp(query, server.listen, port=port or server.port, timeout=2)


def addresses(reply: dns.message.Message) -> set[str]:
    return {r.to_text() for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A for r in rrset}


def eventually(server: DnsServer, name: str, want: set[str], timeout: float = 5.0) -> set[str]:
    deadline = time.monotonic() + timeout
    got = addresses(ask(server, name))
    while got != want and time.monotonic() < deadline:
        time.sleep(0.05)
        got = addresses(ask(server, name))
    return got


def test_the_record_holds_every_host_and_each_host_its_name(lab_dns: DnsServer) -> None:
    reply = ask(lab_dns, record_name(LAB))
    assert addresses(reply) == {ip for _, ip in HOSTS}
    assert all(rrset.ttl <= 1 for rrset in reply.answer)
    for name, ip in HOSTS:
        assert addresses(ask(lab_dns, name)) == {ip}
        assert addresses(ask(lab_dns, f"{name}.{lab_domain(LAB)}")) == {ip}


def test_hosts_added_and_removed_show_up_without_a_restart(lab_dns: DnsServer) -> None:
    pid = lab_dns.pid()
    grown = [*HOSTS, ("host3", "10.232.9.13")]
    lab_dns.write_hosts(render_hosts(LAB, grown))
    assert eventually(lab_dns, record_name(LAB), {ip for _, ip in grown}) == {ip for _, ip in grown}
    assert addresses(ask(lab_dns, "host3")) == {"10.232.9.13"}
    shrunk = grown[1:]
    lab_dns.write_hosts(render_hosts(LAB, shrunk))
    assert eventually(lab_dns, record_name(LAB), {ip for _, ip in shrunk}) == {
        ip for _, ip in shrunk
    }
    assert ask(lab_dns, "host1").rcode() == dns.rcode.NXDOMAIN
    assert lab_dns.pid() == pid


def test_lab_names_stay_local_and_other_names_are_forwarded(lab_dns: DnsServer) -> None:
    assert ask(lab_dns, f"nosuchhost.{lab_domain(LAB)}").rcode() == dns.rcode.NXDOMAIN
    assert addresses(ask(lab_dns, MIRROR[0])) == {MIRROR[1]}


def test_it_listens_on_its_address_only(lab_dns: DnsServer) -> None:
    other = "127.0.0.1" if lab_dns.listen != "127.0.0.1" else "127.0.0.2"
    query = dns.message.make_query(record_name(LAB), "A")
    with pytest.raises((dns.exception.Timeout, ConnectionRefusedError)):
        dns.query.udp(query, other, port=lab_dns.port, timeout=0.5)


def test_up_again_is_a_no_op_and_restarts_a_server_that_is_gone(lab_dns: DnsServer) -> None:
    pid = lab_dns.pid()
    assert pid is not None and lab_dns.ensure_running() is False and lab_dns.pid() == pid
    assert lab_dns.stop() is True
    assert lab_dns.pid() is None and not lab_dns.answers()
    assert lab_dns.ensure_running() is True
    assert addresses(ask(lab_dns, record_name(LAB))) == {ip for _, ip in HOSTS}


def test_an_address_in_use_is_reported_with_dnsmasqs_message(
    lab_dns: DnsServer, tmp_path: Path
) -> None:
    twin = DnsServer(
        tmp_path / "twin", listen=lab_dns.listen, port=lab_dns.port, domain=lab_domain("twin")
    )
    with pytest.raises(DnsServerError, match=r"did not start: .*in use"):
        twin.ensure_running()
    assert twin.pid() is None
