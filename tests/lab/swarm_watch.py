"""A watcher of one application's mesh on a lab manager, while something rolls.

``swarm_watcher.py`` runs on the manager in the background (its python3) and samples,
once a second, the tasks Swarm runs and each of their nodes' ``nodes()`` (asked from the
application's agent container on that manager). Judge the samples with
:mod:`tests.support.mesh_watch`.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.lab.conftest import LabHandle, wait_until

WATCHER = Path(__file__).with_name("swarm_watcher.py")


class SwarmWatcher:
    """Samples ``app``'s mesh on ``manager`` while the ``with`` block runs.

    ``samples``: the ``{node: [peers unseen]}`` of every sample the agent answered;
    ``errors``: how many it did not (the agent container was being replaced).
    """

    def __init__(
        self, lab: LabHandle, manager: str, app: str, network: str, *, tls: bool = False
    ) -> None:
        self.lab, self.manager, self.app, self.network, self.tls = lab, manager, app, network, tls
        self.samples: list[dict[str, list[str]]] = []
        self.errors: list[str] = []

    def __enter__(self) -> SwarmWatcher:
        agent = self.lab.ssh(
            self.manager,
            f"docker ps -q --filter label=com.docker.swarm.service.name={self.app}-agent",
        ).split()[0]
        mode = "tls" if self.tls else "plain"
        self.lab.ssh(
            self.manager,
            f"cat > /root/watch.py <<'EOF'\n{WATCHER.read_text()}\nEOF\n"
            "rm -f /root/watch-stop /root/watch.log; "
            f"nohup python3 /root/watch.py {self.app} {self.network} {agent} {self.app} {mode} "
            "> /root/watch.log 2>&1 < /dev/null &",
        )
        wait_until(
            lambda: bool(self.lab.ssh(self.manager, "cat /root/watch.log").strip()),
            30,
            "the watcher's first sample",
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.lab.ssh(self.manager, "touch /root/watch-stop")
        wait_until(
            lambda: (
                not self.lab.ssh(
                    self.manager, "pgrep -f 'python3 /root/watch[.]py' || true"
                ).strip()
            ),
            30,
            "the watcher to stop",
        )
        for line in self.lab.ssh(self.manager, "cat /root/watch.log").splitlines():
            sample = json.loads(line)
            if "error" in sample:
                self.errors.append(sample["error"])
            else:
                self.samples.append(sample["missing"])
