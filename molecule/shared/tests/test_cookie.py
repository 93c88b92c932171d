"""The Erlang cookie: a file only the application's user can read inside each task,
and in no process's arguments on any host."""

from __future__ import annotations

import lab_state
import pytest
from testinfra.host import Host

testinfra_hosts = lab_state.hosts()


@pytest.fixture(scope="module")
def cookie() -> str:
    """The cookie, read inside a task on the acting manager (stdout only, never argv)."""
    manager = lab_state.connect(lab_state.manager())
    containers = lab_state.app_containers(manager)
    assert containers, f"no {lab_state.APP} task on {lab_state.manager()}"
    value = manager.check_output("docker exec %s cat %s", containers[0], lab_state.COOKIE_FILE)
    assert len(value) >= 20  # really a cookie, so the search below means something
    return str(value)


def test_cookie_file_owner_and_mode_in_each_task(host: Host) -> None:
    containers = lab_state.app_containers(host)
    if not containers:
        pytest.skip(f"no {lab_state.APP} task scheduled on this host")
    uid = lab_state.APP_USER_ID
    for container in containers:
        stat = host.check_output(
            "docker exec %s stat -L -c '%%u %%g %%a' %s", container, lab_state.COOKIE_FILE
        )
        assert stat == f"{uid} {uid} 400", container


def test_no_cookie_in_any_process_arguments(host: Host, cookie: str) -> None:
    args = host.check_output("ps -eo args")
    assert "docker" in args  # the listing really covers the host's processes
    assert cookie not in args
