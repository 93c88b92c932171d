"""Shell snippets shared by the Docker facts.

Several facts read "every object of a kind" the same way: list the IDs, inspect them all
in one call (``docker X inspect`` of no IDs is an error, so an empty list prints ``[]``),
and, for swarm-wide objects, only on a manager: elsewhere they print ``[]`` instead of
failing the run, so one deploy can plan the engine install and the swarm together.
"""

from __future__ import annotations

# True on a swarm manager (the only place swarm-wide objects can be listed).
IF_MANAGER = "[ \"$(docker info --format '{{.Swarm.ControlAvailable}}' 2>/dev/null)\" = true ]"


def inspect_each(list_command: str, inspect_command: str) -> str:
    """Shell that inspects every ID ``list_command`` prints, or prints ``[]`` when none.

    Example: ``inspect_each("docker secret ls -q", "docker secret inspect")``.
    """
    return (
        f'ids=$({list_command}); if [ -n "$ids" ]; then {inspect_command} $ids; '
        "else echo '[]'; fi"
    )


def on_manager(command: str, condition: str = IF_MANAGER) -> str:
    """Run ``command`` when ``condition`` holds (default: on a manager), else print ``[]``."""
    return f"if {condition}; then {command}; else echo '[]'; fi"
