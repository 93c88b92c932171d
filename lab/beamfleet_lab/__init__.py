"""The local multi-host lab (``beamfleet lab``): Debian hosts as systemd containers."""

from beamfleet_lab.errors import LabError
from beamfleet_lab.lab import DEFAULT_LAB, HostStatus, Lab, LabHost, LabState

__all__ = ["DEFAULT_LAB", "HostStatus", "Lab", "LabError", "LabHost", "LabState"]
