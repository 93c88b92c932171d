"""Facts about the host's kernel settings (sysctl), and whether the host may change them.

A host that is itself a container sees ``/proc/sys`` read-only: its kernel belongs to the
machine it runs on. :class:`KernelSettings` tells those settings apart, so a deploy can
leave them alone there instead of failing on every run.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra.api.facts import FactBase
from typing_extensions import override

from beamfleet.controller.remote_scripts import script_shell


@dataclass(frozen=True)
class KernelSetting:
    """One sysctl key as the host has it."""

    value: str | None  # None: the kernel has no such setting
    writable: bool


def parse_kernel_settings(output: list[str]) -> dict[str, KernelSetting]:
    """Parse ``assets/remote/sysctl_read.sh`` output (``KEY VALUE rw|ro|absent`` lines)."""
    settings: dict[str, KernelSetting] = {}
    for line in output:
        words = line.split()
        if len(words) < 3:
            continue
        key, access = words[0], words[-1]
        if access == "absent":
            settings[key] = KernelSetting(None, writable=False)
        else:
            # multi-valued settings (e.g. ip_local_port_range) keep their words
            settings[key] = KernelSetting(" ".join(words[1:-1]), writable=access == "rw")
    return settings


class KernelSettings(FactBase[dict[str, KernelSetting]]):
    """
    The given sysctl keys: ``{key: KernelSetting(value, writable)}``.

    + keys: sysctl keys in dotted form

    .. code:: python

        live = host.get_fact(KernelSettings, keys=("net.ipv4.neigh.default.gc_thresh3",))
    """

    @override
    def command(self, keys: tuple[str, ...]) -> str:
        return script_shell("sysctl_read.sh", *keys)

    @override
    @staticmethod
    def default() -> dict[str, KernelSetting]:
        return {}

    @override
    def process(self, output: list[str]) -> dict[str, KernelSetting]:
        return parse_kernel_settings(output)
