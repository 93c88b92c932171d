"""Errors of the discovery agent. Every message says what to check next."""

from __future__ import annotations


class DiscoveryError(Exception):
    """Base class of every discovery error."""


class SourceError(DiscoveryError):
    """A source could not give an answer (timeout, server failure, bad response).

    A source raises this instead of returning an empty set, so that a failure is never
    mistaken for "zero peers" (which would tear the cluster down).
    """

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"source {source}: {reason}")


class ConfigError(DiscoveryError):
    """The agent's configuration is invalid; ``problems`` lists one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid agent configuration:\n" + "\n".join(f"  - {p}" for p in problems))
