"""The Engine API client that operations run on hosts, run here against the real dockerd.

The rendered command is run by ``sh`` exactly as pyinfra runs it on a host; the lab suite
exercises the swarm verbs (join, service create/update, rollout) on real swarms.
"""

import json
import subprocess

from pyinfra.api.command import StringCommand

from beamfleet.controller.operations.engine_api import engine_api_command


def _run(command: StringCommand, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", command.get_raw_value()],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_2xx_request_exits_zero() -> None:
    result = _run(engine_api_command("request", "GET", "/version"))
    assert result.returncode == 0, result.stderr


def test_an_error_answer_exits_one_with_dockers_message() -> None:
    # An invalid join request: Docker answers 400 and says which field is wrong.
    result = _run(engine_api_command("request", "POST", "/swarm/join"), json.dumps({}))
    assert result.returncode == 1
    assert "Docker Engine API POST /swarm/join: 400" in result.stderr
    assert "ListenAddr" in result.stderr


def test_the_body_is_read_from_stdin_not_argv() -> None:
    marker = "s3cr3t-join-token-value"
    command = engine_api_command("request", "POST", "/swarm/join")
    assert marker not in command.get_raw_value()
    result = _run(command, json.dumps({"ListenAddr": "", "JoinToken": marker}))
    assert result.returncode == 1
    assert marker not in result.stderr  # Docker's message does not echo the token


def test_apply_service_outside_a_swarm_says_so() -> None:
    spec = {"Name": "x", "TaskTemplate": {"ContainerSpec": {"Image": "none"}}}
    # as the service operation sends it: the spec on stdin, nothing of it in the command
    result = _run(engine_api_command("apply-service"), json.dumps(spec))
    assert result.returncode == 1
    assert "swarm" in result.stderr.lower()


def test_unknown_verb_prints_usage() -> None:
    result = _run(engine_api_command("frobnicate"))
    assert result.returncode == 1
    assert "usage:" in result.stderr


def test_wait_rollout_of_an_unknown_service_fails_with_the_reason() -> None:
    result = _run(engine_api_command("wait-rollout", "no-such-service", "5"))
    assert result.returncode == 1
    assert "GET /services/no-such-service" in result.stderr
