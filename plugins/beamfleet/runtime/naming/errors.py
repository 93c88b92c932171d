"""Errors of node-name templating, each with the exit code both CLI forms use.

Exit codes (the same in ``beamfleet nodename`` and the ``beamfleet-nodename`` shim):

==  ==========================================================================
0   success (or, with ``--exec``, never returns: the command replaces the process)
2   bad input: unknown flag/provider/format, invalid basename, CIDR or address
3   address selection: no candidate address, or several and no filter decides
4   address provider failure: metadata endpoint unreachable or answering an error, unset
    ``POD_IP``/``env:VAR``, unresolvable hostname
126 ``--exec`` command found but not executable; 127 ``--exec`` command not found
==  ==========================================================================
"""

from __future__ import annotations


class NamingError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class InvalidInputError(NamingError, ValueError):
    """A flag value is not acceptable (checked before anything is looked up)."""

    exit_code = 2


class AddressSelectionError(NamingError):
    """No address, or more than one, survives the filters."""

    exit_code = 3


class NoAddressError(AddressSelectionError):
    """No candidate address matches the filters."""


class AmbiguousAddressError(AddressSelectionError):
    """Several candidate addresses remain and no filter decides between them."""


class ProviderError(NamingError):
    """An address provider failed (metadata API, environment, hostname)."""

    exit_code = 4
