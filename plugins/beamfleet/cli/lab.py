"""`beamfleet lab` (placeholder until issue 5 lands)."""

import click


@click.command()
def lab() -> None:
    """The local multi-host lab."""
    raise click.ClickException("not implemented yet (issue 5)")
