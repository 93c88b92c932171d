"""The local multi-host lab (``beamfleet lab``): Debian hosts as systemd containers."""

from beamfleet.lab.errors import LabError
from beamfleet.lab.lab import DEFAULT_LAB, HostStatus, Lab, LabHost, LabState

__all__ = ["DEFAULT_LAB", "HostStatus", "Lab", "LabError", "LabHost", "LabState"]
