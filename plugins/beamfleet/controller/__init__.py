"""The controller side: what runs where pyinfra runs.

Inventory keys (:mod:`~beamfleet.controller.inventory`), pyinfra facts and operations,
the reusable ``@deploy()`` blocks and image building. It may use the runtime side (the
distribution client's cookie rules, naming); the runtime never imports it.
"""
