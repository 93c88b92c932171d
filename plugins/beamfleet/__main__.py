"""Allow ``python -m beamfleet``."""

from beamfleet.runtime.cli import main

main()
