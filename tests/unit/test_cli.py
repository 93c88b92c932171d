"""The ``beamfleet`` entry point and its lazily loaded sub-commands."""

from click.testing import CliRunner

from beamfleet import __version__
from beamfleet.runtime.cli import SUBCOMMANDS, main


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_help_lists_every_subcommand() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in SUBCOMMANDS:
        assert name in result.output
