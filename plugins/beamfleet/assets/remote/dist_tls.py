"""TLS distribution certificates of one application, made and kept on a swarm manager.

Shipped as the text of ``python3 -c`` (see ``beamfleet.controller.operations.dist_tls``);
standard library and the ``openssl`` command only, no syntax newer than Python 3.7.
Private keys are written by openssl into DIR (mode 0700, files 0600/0400) and reach Docker
as files (``docker secret create NAME FILE``): no key is ever in an argument, an output
or the environment.

Verbs (argv after the script):
  state DIR               print one JSON object: {"version": N (0: none), "node_not_after":
                          epoch, "agent_not_after": epoch, "ca_not_after": epoch}, as
                          `issue` recorded them (reads no key)
  issue APP DIR VERSION SUBNET DAYS CA_DAYS
                          make the CA if DIR has none (valid CA_DAYS), then version VERSION
                          of the node certificate (every address of SUBNET as its names:
                          OTP checks a node's certificate against the host part of its
                          name) and of the agent's (a client only), valid DAYS, each with
                          its key in one PEM file; create the Docker secrets
                          APP_dist_ca.vN, APP_dist_node.vN, APP_dist_agent.vN from them
  renew-ca APP DIR CA_DAYS a new certificate of the CA for its same key and name, valid
                          CA_DAYS (what it signed stays valid under it)
  issue-hosts APP DIR VERSION DAYS CA_DAYS HOST...
                          host mode: the CA if none, version VERSION's agent certificate the
                          first time, and for each HOST (the host part of a node's name)
                          without one, its node certificate in vN/hosts/HOST.pem; no secret
"""

from __future__ import annotations

import calendar
import ipaddress
import json
import os
import subprocess
import sys
import time

LABEL_APP = "io.beamfleet.app"
LABEL_ROLE = "io.beamfleet.dist-tls"


def run(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{argv[0]} {argv[1]}: {proc.stderr.decode(errors='replace').strip()[-400:]}")
    return proc.stdout.decode()


def not_after(cert: str) -> int:
    """The certificate's expiry (epoch seconds)."""
    text = run("openssl", "x509", "-enddate", "-noout", "-in", cert).strip()
    stamp = text.split("=", 1)[1]  # e.g. "Dec 30 07:35:00 2026 GMT"
    return calendar.timegm(time.strptime(stamp, "%b %d %H:%M:%S %Y %Z"))


def state(directory: str) -> None:
    """Reads what ``issue`` recorded: no key, and no openssl needed."""
    try:
        with open(os.path.join(directory, "current")) as f:
            version = int(f.read().strip() or 0)
        with open(os.path.join(directory, f"v{version}", "expiry.json")) as f:
            expiry = json.load(f)
    except (OSError, ValueError):
        version, expiry = 0, {}
    hosts_dir = os.path.join(directory, f"v{version}", "hosts")
    hosts = (
        sorted(f[: -len(".pem")] for f in os.listdir(hosts_dir)) if os.path.isdir(hosts_dir) else []
    )
    print(
        json.dumps(
            {
                "version": version,
                "node_not_after": expiry.get("node"),
                "agent_not_after": expiry.get("agent"),
                "ca_not_after": expiry.get("ca"),
                "hosts": hosts,
            }
        )
    )


def _extensions(path: str, names: list[str]) -> None:
    lines = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature",
        "extendedKeyUsage=serverAuth,clientAuth",
    ]
    if names:
        lines.append("subjectAltName=" + ",".join(names))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def _leaf(
    *, directory: str, here: str, role: str, subject: str, names: list[str], days: int
) -> str:
    key, csr, crt = (os.path.join(here, f"{role}.{ext}") for ext in ("key", "csr", "crt"))
    ext = os.path.join(here, f"{role}.ext")
    _extensions(ext, names)
    run(
        "openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", key, "-out", csr, "-subj", subject,
    )  # fmt: skip
    run(
        "openssl", "x509", "-req", "-in", csr, "-CA", os.path.join(directory, "ca.pem"),
        "-CAkey", os.path.join(directory, "ca.key"), "-set_serial",
        str(int.from_bytes(os.urandom(15), "big")), "-days", str(days), "-sha256",
        "-extfile", ext, "-out", crt,
    )  # fmt: skip
    bundle = os.path.join(here, f"{role}.pem")
    with open(bundle, "w") as out:
        for part in (crt, key):
            with open(part) as f:
                out.write(f.read())
    os.chmod(bundle, 0o400)
    os.remove(key)
    os.remove(csr)
    return bundle


def _secret(app: str, name: str, role: str, path: str) -> None:
    listed = run("docker", "secret", "ls", "-q", "--filter", f"name={name}").split()
    if listed:
        return  # made by an earlier, interrupted run: same version, same files
    run(
        "docker", "secret", "create", "--label", f"{LABEL_APP}={app}",
        "--label", f"{LABEL_ROLE}={role}", name, path,
    )  # fmt: skip


def _ca(app: str, directory: str, ca_days: int) -> str:
    """The CA of ``directory`` (made the first time); returns its certificate's path."""
    os.umask(0o077)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    ca_key, ca_pem = os.path.join(directory, "ca.key"), os.path.join(directory, "ca.pem")
    if not os.path.exists(ca_key):
        run(
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", ca_key, "-out", ca_pem, "-days", str(ca_days), "-sha256",
            "-subj", f"/CN=beamfleet {app} distribution CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        os.chmod(ca_key, 0o400)
        os.chmod(ca_pem, 0o444)
    return ca_pem


def renew_ca(app: str, directory: str, ca_days: int) -> None:
    """A new CA certificate for the same key and name, valid ``ca_days`` from now.

    Certificates name their issuer by its name and key (their authority key identifier is
    the key's, no serial), so those the old CA certificate signed verify against the new
    one and the other way round: nodes trusting either still connect, and the renewal
    rolls like any new version. (A new CA *key* would not.)
    """
    os.umask(0o077)
    ca_key, ca_pem = os.path.join(directory, "ca.key"), os.path.join(directory, "ca.pem")
    if not os.path.exists(ca_key):
        sys.exit(f"no CA in {directory} to renew")
    fresh = ca_pem + ".new"
    run(
        "openssl", "req", "-x509", "-new", "-key", ca_key, "-out", fresh,
        "-days", str(ca_days), "-sha256", "-subj", f"/CN=beamfleet {app} distribution CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    os.chmod(fresh, 0o444)
    os.replace(fresh, ca_pem)


def _record(directory: str, version: int, node_crt: str) -> None:
    here = os.path.join(directory, f"v{version}")
    expiry = {
        "node": not_after(node_crt),
        "agent": not_after(os.path.join(here, "agent.crt")),
        "ca": not_after(os.path.join(directory, "ca.pem")),
    }
    with open(os.path.join(here, "expiry.json"), "w") as f:
        json.dump(expiry, f)
    with open(os.path.join(directory, "current"), "w") as f:
        f.write(f"{version}\n")


def _names(host: str) -> list[str]:
    """A node's certificate names for the host part of its name (OTP checks it as a DNS
    name; an address is an IP name too)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return [f"DNS:{host}"]
    return [f"DNS:{host}", f"IP:{host}"]


def issue(*, app: str, directory: str, version: int, subnet: str, days: int, ca_days: int) -> None:
    ca_pem = _ca(app, directory, ca_days)
    here = os.path.join(directory, f"v{version}")
    os.makedirs(here, mode=0o700, exist_ok=True)
    hosts = [str(h) for h in ipaddress.ip_network(subnet).hosts()]
    names = [n for h in hosts for n in _names(h)]
    node = _leaf(
        directory=directory,
        here=here,
        role="node",
        subject=f"/CN={app} node",
        names=names,
        days=days,
    )
    agent = _leaf(
        directory=directory,
        here=here,
        role="agent",
        subject=f"/CN={app} agent",
        names=[],
        days=days,
    )
    _secret(app, f"{app}_dist_ca.v{version}", "ca", ca_pem)
    _secret(app, f"{app}_dist_node.v{version}", "node", node)
    _secret(app, f"{app}_dist_agent.v{version}", "agent", agent)
    _record(directory, version, os.path.join(here, "node.crt"))


def issue_hosts(
    *, app: str, directory: str, version: int, days: int, ca_days: int, hosts: list[str]
) -> None:
    """Host mode: version ``version`` (its agent certificate, the first time) and one node
    certificate per host part in ``hosts`` that has none yet, in ``v<N>/hosts/<host>.pem``."""
    _ca(app, directory, ca_days)
    here = os.path.join(directory, f"v{version}")
    fresh = not os.path.isdir(here)
    os.makedirs(os.path.join(here, "hosts"), mode=0o700, exist_ok=True)
    if fresh or not os.path.exists(os.path.join(here, "agent.pem")):
        _leaf(
            directory=directory, here=here, role="agent", subject=f"/CN={app} agent", names=[],
            days=days,
        )  # fmt: skip
    first = None
    for host in hosts:
        bundle = os.path.join(here, "hosts", f"{host}.pem")
        if not os.path.exists(bundle):
            _leaf(
                directory=directory, here=here, role=f"node-{host}", subject=f"/CN={app} {host}",
                names=_names(host), days=days,
            )  # fmt: skip
            os.rename(os.path.join(here, f"node-{host}.pem"), bundle)
        first = first or os.path.join(here, f"node-{host}.crt")
    if first is not None and os.path.exists(first):
        _record(directory, version, first)


def main(argv: list[str]) -> None:
    if argv[:1] == ["state"] and len(argv) == 2:
        state(argv[1])
    elif argv[:1] == ["renew-ca"] and len(argv) == 4:
        renew_ca(argv[1], argv[2], int(argv[3]))
    elif argv[:1] == ["issue-hosts"] and len(argv) >= 6:
        app, directory, version, days, ca_days = argv[1:6]
        issue_hosts(
            app=app, directory=directory, version=int(version), days=int(days),
            ca_days=int(ca_days), hosts=argv[6:],
        )  # fmt: skip
    elif argv[:1] == ["issue"] and len(argv) == 7:
        app, directory, version, subnet, days, ca_days = argv[1:]
        issue(
            app=app, directory=directory, version=int(version), subnet=subnet,
            days=int(days), ca_days=int(ca_days),
        )  # fmt: skip
    else:
        sys.exit(
            "usage: state DIR | issue APP DIR VERSION SUBNET DAYS CA_DAYS | "
            "issue-hosts APP DIR VERSION DAYS CA_DAYS HOST... | renew-ca APP DIR CA_DAYS"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
