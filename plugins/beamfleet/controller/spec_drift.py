"""Where a running service differs from the spec beamfleet gave it (pure: unit-tested).

A deploy cannot trust its own spec-hash label alone: a service edited by hand (``docker
service update --no-healthcheck``, ``--network-add``, ``scale``) keeps the label of the
spec it was created with. So the live spec is compared, field by field, with the desired
one, on the fields the desired spec sets (what beamfleet owns): a field the engine or a
person added elsewhere is not beamfleet's business, a change to one of its own is drift.

What the engine adds is not drift:

* keys the desired spec does not set (``Isolation``, ``ForceUpdate``, ``Placement``...)
  and zero values it leaves out of its answer (``MaxFailureRatio: 0``);
* the digest it may pin an image reference to (``demo:1@sha256:...`` for ``demo:1``);
* network IDs where the spec names networks (``Target``), and secret IDs next to names.

Lists are compared element by element and must have the same length: a network, secret or
environment variable added by hand is drift.

Example::

    spec_drift(desired, live["Spec"], {"k3l0...": "beamfleet-demo"})  # [] when in step
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_NO_VALUE: tuple[Any, ...] = (None, 0, "", False, [], {})


def _image_without_digest(live: str, desired: str) -> str:
    if "@" in live and "@" not in desired:
        return live.split("@", 1)[0]
    return live


def normalise_live(live: Any, network_names: Mapping[str, str]) -> Any:
    """``live`` with network IDs in ``Networks[].Target`` replaced by their names."""
    if isinstance(live, list):
        return [normalise_live(item, network_names) for item in live]
    if not isinstance(live, dict):
        return live
    result = {key: normalise_live(value, network_names) for key, value in live.items()}
    networks = result.get("Networks")
    if isinstance(networks, list):
        result["Networks"] = [
            {**n, "Target": _network_name(n.get("Target"), network_names)}
            if isinstance(n, dict)
            else n
            for n in networks
        ]
    return result


def _network_name(target: Any, network_names: Mapping[str, str]) -> Any:
    if not isinstance(target, str):
        return target
    if target in network_names:
        return network_names[target]
    # the engine may answer a shortened ID
    matches = [name for nid, name in network_names.items() if nid.startswith(target)]
    return matches[0] if len(matches) == 1 and len(target) >= 12 else target


def _differences(desired: Any, live: Any, path: str) -> list[str]:
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            if live is None and all(v in _NO_VALUE for v in desired.values()):
                return []
            return [path]
        found: list[str] = []
        for key, want in desired.items():
            sub = f"{path}.{key}" if path else str(key)
            if key not in live or live[key] is None:
                if want not in _NO_VALUE:
                    found.append(sub)
                continue
            found += _differences(want, live[key], sub)
        return found
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return [path]
        found = []
        for index, (want, have) in enumerate(zip(desired, live, strict=True)):
            found += _differences(want, have, f"{path}[{index}]")
        return found
    if path.endswith("ContainerSpec.Image") and isinstance(live, str) and isinstance(desired, str):
        live = _image_without_digest(live, desired)
    return [] if desired == live else [path]


def spec_drift(
    desired: Mapping[str, Any],
    live: Mapping[str, Any],
    network_names: Mapping[str, str] | None = None,
) -> list[str]:
    """The paths of ``desired``'s fields whose live value differs (``[]``: in step).

    + desired: the ServiceSpec beamfleet applies
    + live: ``Spec`` of ``docker service inspect`` (the engine's answer)
    + network_names: ``{network ID: name}`` of the swarm's networks

    Example: ``["TaskTemplate.ContainerSpec.Healthcheck.Test"]`` after ``docker service
    update --no-healthcheck``.
    """
    return _differences(dict(desired), normalise_live(dict(live), network_names or {}), "")
