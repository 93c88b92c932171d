"""TlsConfig: the SSL context it builds, and each way its files can be unusable."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from beamfleet.runtime.cli import main
from beamfleet.runtime.discovery.config import ConfigError, load_config
from beamfleet.runtime.erlang_dist import TlsConfig, TlsConfigError
from tests.support.tls_certs import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def config(pki: Pki, **override: Path) -> TlsConfig:
    files = {"certfile": pki.client.cert, "keyfile": pki.client.key, "cafile": pki.ca.cert}
    return TlsConfig(**{**files, **override})


def refusal(cfg: TlsConfig) -> str:
    with pytest.raises(TlsConfigError) as info:
        cfg.client_context()
    assert "PRIVATE KEY" not in str(info.value)
    return str(info.value)


def test_context_verifies_the_ca_chain_with_tls13_only(pki: Pki) -> None:
    context = config(pki).client_context()
    assert context.minimum_version is ssl.TLSVersion.TLSv1_3
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is False
    # only the given CA is trusted (no system store)
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "beamfleet test ca"),),)
    ]


def test_from_paths_expands_home(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(pki.ca.cert.parent))
    cfg = TlsConfig.from_paths("~/client.pem", "~/client.key", "~/ca.pem")
    assert cfg.certfile == pki.client.cert
    cfg.client_context()


def test_missing_file_is_named(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    message = refusal(config(pki, cafile=missing))
    assert f"TLS CA file {missing} does not exist" in message
    assert "--tls-ca" in message


def test_key_others_can_read_is_refused_with_the_fix(pki: Pki, tmp_path: Path) -> None:
    key = tmp_path / "k.key"
    key.write_bytes(pki.client.key.read_bytes())
    key.chmod(0o640)
    message = refusal(config(pki, keyfile=key))
    assert message == (
        f"TLS key file {key} has mode 0640: group or other users can read the private "
        f"key (a secret); make it private with: chmod 400 {key}"
    )


def test_not_pem_files_are_named(pki: Pki, tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_text("hello\n")
    junk.chmod(0o600)
    assert f"TLS certificate file {junk} does not hold a PEM certificate" in refusal(
        config(pki, certfile=junk)
    )
    assert f"TLS key file {junk} does not hold a PEM private key" in refusal(
        config(pki, keyfile=junk)
    )
    assert f"TLS CA file {junk} does not hold PEM CA certificate(s)" in refusal(
        config(pki, cafile=junk)
    )


def test_broken_ca_pem_is_named(pki: Pki, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    assert f"TLS CA file {ca} cannot be loaded" in refusal(config(pki, cafile=ca))


def test_key_of_another_certificate(pki: Pki) -> None:
    message = refusal(config(pki, keyfile=pki.node.key))
    assert "the key does not belong to the certificate" in message
    assert str(pki.client.cert) in message and str(pki.node.key) in message


def test_encrypted_key_is_refused_without_prompting(pki: Pki, tmp_path: Path) -> None:
    key = serialization.load_pem_private_key(pki.client.key.read_bytes(), password=None)
    encrypted = tmp_path / "enc.key"
    encrypted.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    ))  # fmt: skip
    encrypted.chmod(0o600)
    assert f"TLS key file {encrypted} is encrypted" in refusal(config(pki, keyfile=encrypted))


def test_cli_needs_all_three_options(pki: Pki) -> None:
    for command in (["node", "ping", "a@127.0.0.1"], ["mesh", "a@127.0.0.1"]):
        result = CliRunner().invoke(main, [*command, "--tls-cert", str(pki.client.cert)])
        assert result.exit_code == 2
        assert "missing: --tls-key, --tls-ca" in result.stderr


def test_cli_reads_the_options_from_the_environment(pki: Pki, tmp_path: Path) -> None:
    env = {"BEAMFLEET_TLS_CERT": str(pki.client.cert), "BEAMFLEET_TLS_CA": str(pki.ca.cert)}
    result = CliRunner().invoke(main, ["mesh", "a@127.0.0.1"], env=env)
    assert result.exit_code == 2
    assert "missing: --tls-key" in result.stderr


def test_agent_needs_all_three_settings(pki: Pki, tmp_path: Path) -> None:
    cookie = tmp_path / "cookie"
    cookie.write_text("c" * 20)
    env = {"BEAMFLEET_COOKIE_FILE": str(cookie)}
    with pytest.raises(ConfigError) as info:
        load_config({"tls_cert": str(pki.client.cert)}, ["static:a@127.0.0.1"], env=env)
    assert "missing: --tls-key, --tls-ca" in str(info.value)
    full = {
        "tls_cert": str(pki.client.cert),
        "tls_key": str(pki.client.key),
        "tls_ca": str(pki.ca.cert),
    }
    loaded = load_config(full, ["static:a@127.0.0.1"], env=env)
    assert (loaded.tls_cert, loaded.tls_key, loaded.tls_ca) == (
        pki.client.cert,
        pki.client.key,
        pki.ca.cert,
    )
