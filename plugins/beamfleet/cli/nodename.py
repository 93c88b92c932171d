"""`beamfleet nodename` (placeholder until issue 3 lands)."""

import click


@click.command()
def nodename() -> None:
    """Compute a BEAM node name from this host's or container's address."""
    raise click.ClickException("not implemented yet (issue 3)")
