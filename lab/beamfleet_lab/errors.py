"""Errors raised by the lab, each with a message that says what to do."""

from __future__ import annotations


class LabError(Exception):
    """Base class of every lab error."""


class DockerUnavailableError(LabError):
    """The outer Docker engine (the one that runs the lab hosts) does not answer."""


class DockerCommandError(LabError):
    """A ``docker`` command run by the lab failed."""


class LabExistsError(LabError):
    """``lab up`` was asked for a lab that is already running with other settings."""


class LabNotFoundError(LabError):
    """The lab has no state on this machine (it was never started, or it was removed)."""


class UnknownHostError(LabError):
    """A host name that is not part of the lab."""


class SubnetExhaustedError(LabError):
    """No free /24 is left for a new lab inside 10.232.0.0/16."""


class DnsServerError(LabError):
    """The lab's DNS server (dnsmasq on the lab network's gateway) cannot be started."""


class LabTooOldError(LabError):
    """A lab created by an earlier version, without something this version needs."""
