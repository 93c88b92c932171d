"""`beamfleet node`: input checks that need no Erlang node (exit 2, cookie handling)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from beamfleet.runtime.cli import main
from beamfleet.runtime.cli import node as node_cli
from beamfleet.runtime.cli.node import EXIT_USAGE
from beamfleet.runtime.erlang_dist import (
    AuthenticationFailed,
    ConnectionLost,
    CookieFileError,
    DistError,
    DistTimeout,
    EpmdUnreachable,
    HandshakeRejected,
    InvalidNodeName,
    NodeNotRegistered,
    RpcError,
    read_cookie_file,
)


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["node", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_help_documents_exit_codes() -> None:
    code, out, _ = invoke("--help")
    assert code == 0
    for cmd in ("ping", "nodes", "connect", "disconnect"):
        assert cmd in out
        code, sub, _ = invoke(cmd, "--help")
        assert code == 0
        assert "3  authentication failed: the cookies differ" in sub
        assert "--cookie-file" in sub


@pytest.mark.parametrize("flag", ["--cookie", "--setcookie", "-c"])
def test_no_way_to_pass_the_cookie_value(flag: str) -> None:
    code, _, err = invoke("ping", "a@127.0.0.1", flag, "SECRET")
    assert code == EXIT_USAGE
    assert "No such option" in err


def test_missing_cookie_file_is_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    code, out, err = invoke("ping", "a@127.0.0.1", "--cookie-file", str(missing))
    assert code == EXIT_USAGE
    assert str(missing) in err and "does not exist" in err
    assert "Traceback" not in out + err


def test_env_cookie_file_is_used_and_never_printed(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)  # private, so the emptiness is what is refused
    code, _, err = invoke("ping", "a@127.0.0.1", env={"BEAMFLEET_COOKIE_FILE": str(empty)})
    assert code == EXIT_USAGE and "is empty" in err

    secret = tmp_path / "cookie"
    secret.write_text("TOPSECRETCOOKIE\n")
    secret.chmod(0o400)
    # a bad node name fails before any network traffic, with the cookie already loaded
    code, out, err = invoke("ping", "not-a-node-name", "--json",
                            env={"BEAMFLEET_COOKIE_FILE": str(secret)})
    assert code == EXIT_USAGE
    assert "invalid node name" in err
    assert '"error": "InvalidNodeName"' in out
    assert "TOPSECRETCOOKIE" not in out + err


def test_bad_timeout_is_usage_error() -> None:
    code, _, err = invoke("ping", "a@127.0.0.1", "--timeout", "-1")
    assert code == EXIT_USAGE
    assert "--timeout" in err


def test_read_cookie_file_rules(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.write_text("SECRETVALUE\n")
    assert read_cookie_file(good) == "SECRETVALUE"
    for content, why in (("", "empty"), ("SECRET1\nSECRET2\n", "more than one line"),
                         (b"SECRET\xff\xfe", "UTF-8")):
        bad = tmp_path / "bad"
        if isinstance(content, bytes):
            bad.write_bytes(content)
        else:
            bad.write_text(content)
        with pytest.raises(CookieFileError, match=why) as info:
            read_cookie_file(bad)
        assert "SECRET" not in str(info.value)
    with pytest.raises(CookieFileError, match="cannot read"):
        read_cookie_file(tmp_path)  # a directory


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (AuthenticationFailed("a@h"), 3),
        (EpmdUnreachable("h"), 4),
        (NodeNotRegistered("a@h"), 4),
        (HandshakeRejected("a@h", "not_allowed"), 4),
        (ConnectionLost("a@h"), 4),
        (DistTimeout("handshake", 1.0), 5),
        (RpcError("undef"), 6),
        (CookieFileError("x"), 2),
        (InvalidNodeName("x"), 2),
    ],
)
def test_exit_code_per_error(error: DistError, code: int) -> None:
    assert node_cli._exit_code(error) == code
