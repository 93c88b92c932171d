"""`beamfleet agent` and `beamfleet status` (placeholders until issue 4 lands)."""

import click


@click.command()
def agent() -> None:
    """Run the discovery agent that meshes BEAM nodes."""
    raise click.ClickException("not implemented yet (issue 4)")


@click.command()
def status() -> None:
    """Ask a running agent for its state."""
    raise click.ClickException("not implemented yet (issue 4)")
