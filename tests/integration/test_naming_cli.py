"""One table of cases through the three forms: Python CLI, sh shim under dash, under busybox.

Every case must give the same exit code, stdout and stderr in all three forms (the
expected values are in the table, so a form that drifts fails on its own, too).
Provider cases run against the metadata emulators on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from beamfleet_lab.emulators import (
    AwsImdsEmulator,
    AzureImdsEmulator,
    DigitalOceanMetadataEmulator,
    GcpMetadataEmulator,
    MetadataEmulator,
    OpenStackMetadataEmulator,
    RancherMetadataEmulator,
    rancher_container,
)

ROOT = Path(__file__).resolve().parents[2]
SHIM = ROOT / "plugins" / "beamfleet" / "assets" / "beamfleet-nodename"
FORMS = ("python", "dash", "busybox")


def command(form: str) -> list[str]:
    if form == "python":
        return [sys.executable, "-m", "beamfleet", "nodename"]
    if form == "dash":
        return [shutil.which("dash") or "/usr/bin/dash", str(SHIM)]
    return [shutil.which("busybox") or "/bin/busybox", "sh", str(SHIM)]


def run(form: str, args: list[str], env: dict[str, str] | None = None,
        prefix: list[str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("BEAMFLEET_", "RELEASE_", "ERL_")) and k != "POD_IP"}
    base.update(env or {})
    return subprocess.run([*(prefix or []), *command(form), *args], env=base,
                          capture_output=True, text=True, timeout=timeout, check=False)


@dataclass(frozen=True)
class Case:
    id: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    code: int = 0
    out: str = ""
    err: str = ""


E = "nodename: "
W = E + "warning: --source is deprecated, use --provider (same values)\n"
CASES = [
    Case("env-ipv4-name", ["--basename", "app", "--provider", "env:MY_IP"],
         {"MY_IP": "10.230.20.5"}, out="app@10.230.20.5\n"),
    Case("env-ipv4-env", ["--basename", "app", "--provider", "env:MY_IP", "--format", "env"],
         {"MY_IP": " 10.230.20.5 "},
         out="RELEASE_DISTRIBUTION=name\nRELEASE_NODE=app@10.230.20.5\n"),
    Case("env-ipv4-vmargs", ["--basename", "app_1", "--provider=env:MY_IP", "--format=vm.args"],
         {"MY_IP": "10.230.20.5"}, out="-name app_1@10.230.20.5\n"),
    Case("ipv6-canonical-erl-flags",
         ["--basename", "app", "--provider", "env:MY_IP", "--format", "erl-flags"],
         {"MY_IP": "FD00:230:0:0::5"}, out="-name app@fd00:230::5 -proto_dist inet6_tcp\n"),
    Case("ipv6-env-merges-erl-aflags",
         ["--basename", "app", "--provider", "env:MY_IP", "--format", "env"],
         {"MY_IP": "fd00:230::5", "ERL_AFLAGS": "+S 2"},
         out="RELEASE_DISTRIBUTION=name\nRELEASE_NODE=app@fd00:230::5\n"
             "ERL_AFLAGS='+S 2 -proto_dist inet6_tcp'\n"),
    Case("ipv6-vmargs", ["--basename", "app", "--provider", "env:MY_IP", "--format", "vm.args"],
         {"MY_IP": "fd00:230::5"}, out="-name app@fd00:230::5\n-proto_dist inet6_tcp\n"),
    Case("dotted-hostname-long", ["--basename", "app", "--provider", "env:H", "--format", "env"],
         {"H": "app-1.svc.example."},
         out="RELEASE_DISTRIBUTION=name\nRELEASE_NODE=app@app-1.svc.example\n"),
    Case("short-hostname-sname", ["--basename", "app", "--provider", "env:H", "--format",
                                  "erl-flags"], {"H": "app-1"}, out="-sname app@app-1\n"),
    Case("k8s", ["--basename", "web", "--provider", "k8s"], {"POD_IP": "10.230.21.9"},
         out="web@10.230.21.9\n"),
    Case("k8s-unset", ["--basename", "web", "--provider", "k8s"], code=4,
         err=E + "k8s: POD_IP is not set; add to the container spec: env: - name: POD_IP, "
         "valueFrom: fieldRef: fieldPath: status.podIP\n"),
    Case("env-unset", ["--basename", "app", "--provider", "env:NOPE"], code=4,
         err=E + "env:NOPE: the variable NOPE is not set or empty\n"),
    Case("missing-basename", ["--provider", "k8s"], code=2,
         err=E + "missing --basename NAME (the part before '@')\n"),
    Case("bad-basename", ["--basename", "a b", "--provider", "k8s"], code=2,
         err=E + "invalid --basename 'a b': use 1-200 letters, digits, '_' or '-' "
         "(it becomes the part before '@')\n"),
    Case("basename-with-at", ["--basename", "app@x"], code=2,
         err=E + "invalid --basename 'app@x': use 1-200 letters, digits, '_' or '-' "
         "(it becomes the part before '@')\n"),
    Case("unknown-provider", ["--basename", "app", "--provider", "consul"], code=2,
         err=E + "unknown --provider 'consul'; expected one of: auto, rancher, aws, gcp, azure, "
         "digitalocean, openstack, k8s, hostname, env:VAR\n"),
    Case("bad-env-provider", ["--basename", "app", "--provider", "env:1X"], code=2,
         err=E + "invalid --provider 'env:1X': env:VAR needs a variable name\n"),
    Case("unknown-format", ["--basename", "app", "--format", "json"], code=2,
         err=E + "unknown --format 'json'; expected one of: name, env, vm.args, erl-flags\n"),
    Case("cidr-host-bits", ["--basename", "app", "--cidr", "10.230.1.1/24"], code=2,
         err=E + "invalid --cidr '10.230.1.1/24': expected a network such as 10.0.9.0/24 or "
         "fd00::/64 (no host bits set)\n"),
    Case("cidr-garbage", ["--basename", "app", "--cidr", "10.230.1/24"], code=2,
         err=E + "invalid --cidr '10.230.1/24': expected a network such as 10.0.9.0/24 or "
         "fd00::/64 (no host bits set)\n"),
    Case("cidr-with-other-provider", ["--basename", "app", "--provider", "k8s", "--cidr",
                                    "10.230.0.0/16"], {"POD_IP": "10.230.21.9"}, code=2,
         err=E + "--cidr/--interface only apply to --provider auto, not --provider k8s\n"),
    Case("bad-host", ["--basename", "app", "--provider", "env:H"], {"H": "bad_host!"}, code=2,
         err=E + "invalid host 'bad_host!': not an IP address and not a DNS name "
         "(letters, digits, '-', labels separated by '.')\n"),
    Case("scoped-ipv6-host", ["--basename", "app", "--provider", "env:H"], {"H": "fe80::1%eth0"},
         code=2, err=E + "invalid host 'fe80::1%eth0': not an IP address and not a DNS name "
         "(letters, digits, '-', labels separated by '.')\n"),
    Case("unspecified-host", ["--basename", "app", "--provider", "env:H"], {"H": "0.0.0.0"},
         code=2, err=E + "address '0.0.0.0' cannot be a node's host\n"),
    Case("exec-exports", ["--basename", "app", "--provider", "k8s", "--exec", "--", "sh", "-c",
                          'printf "%s|%s|%s" "$RELEASE_DISTRIBUTION" "$RELEASE_NODE" '
                          '"$BEAMFLEET_NODE_NAME"'], {"POD_IP": "10.230.21.9"},
         out="name|app@10.230.21.9|app@10.230.21.9"),
    Case("exec-ipv6-exports-aflags", ["--basename", "app", "--provider", "k8s", "--exec", "--",
                                      "sh", "-c", 'printf "%s" "$ERL_AFLAGS"'],
         {"POD_IP": "fd00:230::9"}, out="-proto_dist inet6_tcp"),
    Case("exec-erl-flags-appended", ["--basename", "app", "--provider", "k8s", "--format",
                                     "erl-flags", "--exec", "--", "sh", "-c", 'echo "$@"', "x"],
         {"POD_IP": "fd00:230::9"}, out="-name app@fd00:230::9 -proto_dist inet6_tcp\n"),
    Case("exec-not-found", ["--basename", "app", "--provider", "k8s", "--exec", "--",
                            "no-such-command-230"], {"POD_IP": "10.230.21.9"}, code=127,
         err=E + "--exec: command not found: no-such-command-230\n"),
    Case("exec-not-executable", ["--basename", "app", "--provider", "k8s", "--exec", "--",
                                 "/etc/passwd"], {"POD_IP": "10.230.21.9"}, code=126,
         err=E + "--exec: command not executable: /etc/passwd\n"),
    Case("exec-without-command", ["--basename", "app", "--provider", "k8s", "--exec"],
         {"POD_IP": "10.230.21.9"}, code=2, err=E + "--exec needs a command after --\n"),
    # --source: the deprecated old name of --provider, still accepted with a warning
    Case("deprecated-source-alias", ["--basename", "app", "--source", "k8s"],
         {"POD_IP": "10.230.21.9"}, out="app@10.230.21.9\n", err=W),
    Case("deprecated-source-alias-equals", ["--basename", "app", "--source=env:MY_IP",
                                            "--format", "env"], {"MY_IP": "10.230.20.5"},
         out="RELEASE_DISTRIBUTION=name\nRELEASE_NODE=app@10.230.20.5\n", err=W),
    Case("deprecated-source-alias-checked", ["--basename", "app", "--source", "consul"], code=2,
         err=W + E + "unknown --provider 'consul'; expected one of: auto, rancher, aws, gcp, "
         "azure, digitalocean, openstack, k8s, hostname, env:VAR\n"),
    Case("source-and-provider", ["--basename", "app", "--source", "k8s", "--provider", "k8s"],
         {"POD_IP": "10.230.21.9"}, code=2,
         err=W + E + "--source is the old name of --provider: give --provider only\n"),
    Case("command-without-exec", ["--basename", "app", "--provider", "k8s", "--", "bin/app"],
         {"POD_IP": "10.230.21.9"}, code=2,
         err=E + "unexpected argument 'bin/app' (a command needs --exec -- CMD...)\n"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_table_all_forms_agree(case: Case) -> None:
    results = {form: run(form, case.args, case.env) for form in FORMS}
    for form, r in results.items():
        assert (r.returncode, r.stdout, r.stderr) == (case.code, case.out, case.err), form


def test_hostname_provider_is_the_fqdn_in_all_forms() -> None:
    expected = subprocess.run(["hostname", "-f"], capture_output=True, text=True,
                              check=False).stdout.strip() or socket.gethostname()
    outs = {form: run(form, ["--basename", "app", "--provider", "hostname"]) for form in FORMS}
    for form, r in outs.items():
        assert r.returncode == 0, (form, r.stderr)
        assert r.stdout == f"app@{expected.rstrip('.')}\n", form


def test_unknown_option_is_a_usage_error_everywhere() -> None:
    for form in FORMS:
        r = run(form, ["--basename", "app", "--bogus"])
        assert r.returncode == 2 and "--bogus" in r.stderr, form


# -- metadata providers, on the emulators --------------------------------------------------
def emulators() -> dict[str, tuple[MetadataEmulator, str]]:
    return {
        "rancher": (RancherMetadataEmulator([rancher_container("app-1", "10.230.15.5")]),
                    "10.230.15.5"),
        "aws": (AwsImdsEmulator("10.230.10.5"), "10.230.10.5"),
        "gcp": (GcpMetadataEmulator("10.230.11.5"), "10.230.11.5"),
        "azure": (AzureImdsEmulator("10.230.12.5"), "10.230.12.5"),
        "digitalocean": (DigitalOceanMetadataEmulator("10.230.13.5"), "10.230.13.5"),
        "openstack": (OpenStackMetadataEmulator("10.230.14.5"), "10.230.14.5"),
    }


def url_env(provider: str, url: str, **extra: str) -> dict[str, str]:
    return {f"BEAMFLEET_METADATA_URL_{provider.upper()}": url, **extra}


@pytest.fixture(scope="module")
def busybox_wget_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PATH where ``wget`` is busybox's applet (GET only, no -T), ahead of /usr/bin."""
    d = tmp_path_factory.mktemp("bbwget")
    (d / "wget").symlink_to(shutil.which("busybox") or "/bin/busybox")
    return f"{d}:{os.environ['PATH']}"


@pytest.mark.parametrize("provider", list(emulators()))
def test_providers_on_emulators_all_forms_and_http_clients(provider: str,
                                                           busybox_wget_path: str) -> None:
    emulator, ip = emulators()[provider]
    with emulator:
        runs = [(form, {}) for form in FORMS]
        runs += [("dash", {"BEAMFLEET_HTTP_CLIENT": "wget"}),
                 ("busybox", {"BEAMFLEET_HTTP_CLIENT": "curl"})]
        if provider != "aws":  # the IMDSv2 token PUT needs curl or GNU wget
            runs.append(("busybox", {"BEAMFLEET_HTTP_CLIENT": "wget", "PATH": busybox_wget_path}))
        for form, extra in runs:
            emulator.clear_requests()
            r = run(form, ["--basename", "app", "--provider", provider, "--format", "env"],
                    url_env(provider, emulator.url, **extra))
            assert (r.returncode, r.stderr) == (0, ""), (form, extra)
            assert r.stdout == f"RELEASE_DISTRIBUTION=name\nRELEASE_NODE=app@{ip}\n", form
            assert emulator.requests, form
        if provider == "aws":
            r = run("busybox", ["--basename", "app", "--provider", "aws"],
                    url_env("aws", emulator.url, BEAMFLEET_HTTP_CLIENT="wget",
                            PATH=busybox_wget_path))
            assert r.returncode == 4
            assert "PUT needs curl or GNU wget" in r.stderr


def test_aws_token_flow_is_followed() -> None:
    with AwsImdsEmulator("10.230.10.5") as imds:
        for form in FORMS:
            imds.clear_requests()
            r = run(form, ["--basename", "app", "--provider", "aws"], url_env("aws", imds.url))
            assert r.stdout == "app@10.230.10.5\n", (form, r.stderr)
            put, get = imds.requests
            assert (put.method, put.path) == ("PUT", "/latest/api/token")
            assert put.header("x-aws-ec2-metadata-token-ttl-seconds") == "60"
            assert (get.method, get.path) == ("GET", "/latest/meta-data/local-ipv4")
            assert get.header("x-aws-ec2-metadata-token") == imds.issued_tokens[-1]


def http_status(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> int:
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_calls_that_omit_the_required_header_fail() -> None:
    with AwsImdsEmulator() as aws, GcpMetadataEmulator() as gcp, AzureImdsEmulator() as azure:
        meta = f"{aws.url}/latest/meta-data/local-ipv4"
        assert http_status(meta) == 401
        assert http_status(meta, {"X-aws-ec2-metadata-token": "forged"}) == 401
        assert http_status(f"{aws.url}/latest/api/token", method="PUT") == 400
        gcp_ip = f"{gcp.url}/computeMetadata/v1/instance/network-interfaces/0/ip"
        assert http_status(gcp_ip) == 403
        assert http_status(gcp_ip, {"Metadata-Flavor": "Google"}) == 200
        az = (f"{azure.url}/metadata/instance/network/interface/0/ipv4/ipAddress/0/"
              "privateIpAddress")
        assert http_status(az + "?api-version=2021-02-01&format=text") == 400
        assert http_status(az + "?format=text", {"Metadata": "true"}) == 400
        assert http_status(az + "?api-version=2021-02-01", {"Metadata": "true"}) == 400
        assert http_status(az + "?api-version=2021-02-01&format=text", {"Metadata": "true"}) == 200


def free_closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("form", FORMS)
def test_unreachable_endpoint_names_the_provider(form: str) -> None:
    url = f"http://127.0.0.1:{free_closed_port()}"
    r = run(form, ["--basename", "app", "--provider", "gcp"],
            url_env("gcp", url, BEAMFLEET_METADATA_ATTEMPTS="2"))
    assert r.returncode == 4
    assert r.stderr.startswith(
        f"{E}gcp metadata: GET {url}/computeMetadata/v1/instance/network-interfaces/0/ip "
        "failed after 2 attempts: not reachable ("), r.stderr
    assert "set BEAMFLEET_METADATA_URL_GCP to override the endpoint" in r.stderr


@pytest.mark.parametrize("form", FORMS)
def test_transient_errors_are_retried_and_4xx_is_final(form: str) -> None:
    with DigitalOceanMetadataEmulator("10.230.13.5") as do:
        do.fail_next(2, 503)
        r = run(form, ["--basename", "app", "--provider", "digitalocean"], url_env("digitalocean",
                                                                                  do.url))
        assert (r.returncode, r.stdout) == (0, "app@10.230.13.5\n"), r.stderr
        assert len(do.requests) == 3
        do.clear_requests()
        do.set_fault(404)
        r = run(form, ["--basename", "app", "--provider", "digitalocean"], url_env("digitalocean",
                                                                                  do.url))
        path = "/metadata/v1/interfaces/private/0/ipv4/address"
        assert (r.returncode, r.stderr) == (
            4, f"{E}digitalocean metadata: GET {do.url}{path} answered HTTP 404\n")
        assert len(do.requests) == 1


@pytest.mark.parametrize("form", FORMS)
def test_hanging_endpoint_times_out(form: str) -> None:
    # a listening socket that never answers: connect succeeds, the reply never comes
    with socket.socket() as hang:
        hang.bind(("127.0.0.1", 0))
        hang.listen(16)
        url = f"http://127.0.0.1:{hang.getsockname()[1]}"
        started = time.monotonic()
        r = run(form, ["--basename", "app", "--provider", "openstack"],
                url_env("openstack", url, BEAMFLEET_METADATA_TIMEOUT="1",
                        BEAMFLEET_METADATA_ATTEMPTS="2"), timeout=60)
        elapsed = time.monotonic() - started
    assert r.returncode == 4, r.stderr
    assert r.stderr.startswith(f"{E}openstack metadata: GET {url}/latest/meta-data/local-ipv4 "
                               "failed after 2 attempts: "), r.stderr
    # two 1 s attempts and a 0.2 s backoff; a missing timeout would hang until `timeout=60`
    assert elapsed < 20, elapsed
