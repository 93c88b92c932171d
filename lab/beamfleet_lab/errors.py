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
