"""beamfleet.dist: a pure-Python asyncio hidden-node client of Erlang distribution."""
