"""The runtime side: what runs on the hosts and inside the agent image.

The Erlang distribution client (:mod:`~beamfleet.runtime.erlang_dist`), node naming
(:mod:`~beamfleet.runtime.naming`), the discovery agent (:mod:`~beamfleet.runtime.discovery`)
and their command line (:mod:`~beamfleet.runtime.cli`). It depends on the standard library,
click and dnspython only, and never imports the controller side: the agent image is built
by copying this package as it is.
"""
