"""Rancher 1.x metadata service emulator (``http://rancher-metadata/<version>/<path>``).

Follows the documented behaviour of Rancher 1.6's metadata service
(rancher.com/docs/rancher/v1.6/en/rancher-services/metadata-service/):

- Versions ``2015-07-25``, ``2015-12-19``, ``2016-07-29`` and ``latest`` (= the newest).
  In ``2015-07-25`` a service's ``containers`` is a list of container *names*; in the
  later versions it is a list of container *objects*.
- Top level per version: ``self/`` (``container``, ``service``, ``stack``, ``host``),
  ``containers``, ``services``, ``stacks``, ``hosts``, ``version``.
- ``Accept: application/json`` returns the subtree as JSON. Otherwise plain text:
  a scalar as is (``self/container/primary_ip`` → ``10.42.1.5``, no newline); a map as
  its sorted keys one a line, ``key/`` for a nested map or list; a list as one line an
  item: ``0=<name>`` for an object with a ``name`` (or ``uuid``), ``0/`` for another
  map/list, ``0`` for a scalar.
- A list item can be addressed by index or by its ``name``/``uuid``
  (``self/service/containers/app-1/primary_ip``).
- Unknown path → 404 ``Not found``; unknown version → 404 ``Invalid version``.

State is set and replaced at runtime, thread-safely, by the test::

    with RancherMetadataEmulator(
        containers=[rancher_container("app-1", "10.42.1.5"),
                    rancher_container("app-2", "10.42.1.6")],
        self_name="app-1", service_name="app", stack_name="demo",
    ) as rancher:
        url = rancher.url                     # e.g. http://127.0.0.1:40123
        # GET {url}/latest/self/container/primary_ip            -> "10.42.1.5"
        # GET {url}/latest/self/service (Accept: application/json)
        #     -> {"name": "app", "stack_name": "demo", "containers": [{...}, {...}], ...}
        rancher.set_containers([rancher_container("app-3", "10.42.1.7")])
        rancher.add_container(rancher_container("app-4", None, omit=("ips",)))
        rancher.update_container("app-3", health_state="unhealthy")
        rancher.remove_container("app-3")
        rancher.set_self("app-4")             # or set_self(None): self/container -> 404
        rancher.fail_next(2, 503)             # the next two requests answer 503
        rancher.set_fault(500); rancher.set_fault(None)   # an outage, then recovery

:func:`rancher_container` builds a container object with the fields Rancher 1.6 documents
(``name``, ``primary_ip``, ``ips``, ``state``, ``health_state``, ``service_name``,
``stack_name``, ``uuid``, ``create_index``, ``service_index``, ``host_uuid``,
``hostname``, ``labels``, ``ports``, ``start_count``, ...). ``primary_ip=None`` omits both
``primary_ip`` and ``ips``; ``omit=("ips",)`` drops any listed field, so the clients'
handling of incomplete containers can be tested.
"""

from __future__ import annotations

import copy
import json
import uuid as uuidlib
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote_plus, unquote_plus

from beamfleet_lab.emulators.base import MetadataEmulator, Request, Response

VERSIONS = ("2015-07-25", "2015-12-19", "2016-07-29")
LATEST = VERSIONS[-1]
MAGIC_ARRAY_KEYS = ("name", "uuid")


def rancher_container(
    name: str,
    primary_ip: str | None,
    *,
    ips: Sequence[str] | None = None,
    state: str = "running",
    health_state: str = "healthy",
    service_name: str = "app",
    stack_name: str = "demo",
    service_index: int | None = None,
    omit: Iterable[str] = (),
    **extra: Any,
) -> dict[str, Any]:
    """A Rancher 1.6 metadata container object (``omit`` drops fields after building)."""
    index = service_index if service_index is not None else _index_from_name(name)
    container: dict[str, Any] = {
        "create_index": index,
        "dns": ["169.254.169.250"],
        "dns_search": [f"{stack_name}.rancher.internal"],
        "external_id": uuidlib.uuid5(uuidlib.NAMESPACE_DNS, name).hex,
        "health_check": None,
        "health_state": health_state,
        "host_uuid": "8e7c1b2a-0000-4000-8000-000000000001",
        "hostname": name,
        "labels": {
            "io.rancher.stack.name": stack_name,
            "io.rancher.stack_service.name": f"{stack_name}/{service_name}",
        },
        "links": {},
        "name": name,
        "ports": [],
        "service_index": str(index),
        "service_name": service_name,
        "stack_name": stack_name,
        "start_count": 1,
        "state": state,
        "system": False,
        "uuid": str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"rancher:{name}")),
    }
    if primary_ip is not None:
        container["primary_ip"] = primary_ip
        container["ips"] = list(ips) if ips is not None else [primary_ip]
    elif ips is not None:
        container["ips"] = list(ips)
    container.update(extra)
    for key in omit:
        container.pop(key, None)
    return container


def _index_from_name(name: str) -> int:
    tail = name.rsplit("-", 1)[-1].rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 1


class RancherMetadataEmulator(MetadataEmulator):
    """Rancher 1.x metadata service with a runtime-replaceable set of service containers."""

    provider = "rancher"

    def __init__(
        self,
        containers: Sequence[dict[str, Any]] = (),
        *,
        self_name: str | None = None,
        self_container: dict[str, Any] | None = None,
        service_name: str = "app",
        stack_name: str = "demo",
    ) -> None:
        super().__init__()
        self.service_name = service_name
        self.stack_name = stack_name
        self._containers: list[dict[str, Any]] = [copy.deepcopy(c) for c in containers]
        self._self_container = copy.deepcopy(self_container)
        self._self_name = self_name
        if self_container is None and self_name is None and self._containers:
            self._self_name = str(self._containers[0].get("name"))

    # -- runtime state ---------------------------------------------------------------
    def set_containers(self, containers: Sequence[dict[str, Any]]) -> None:
        """Replace the service's containers (what ``self/service`` lists)."""
        with self._lock:
            self._containers = [copy.deepcopy(c) for c in containers]

    def add_container(self, container: dict[str, Any]) -> None:
        with self._lock:
            self._containers.append(copy.deepcopy(container))

    def remove_container(self, name: str) -> None:
        with self._lock:
            self._containers = [c for c in self._containers if c.get("name") != name]

    def update_container(self, name: str, **fields: Any) -> None:
        """Change fields of a listed container (``KeyError`` if it is not listed)."""
        with self._lock:
            for container in self._containers:
                if container.get("name") == name:
                    container.update(fields)
                    return
        raise KeyError(name)

    def set_self(self, who: str | dict[str, Any] | None) -> None:
        """Which container asks: a listed container's name, a container object, or None."""
        with self._lock:
            if isinstance(who, dict):
                self._self_container, self._self_name = copy.deepcopy(who), None
            else:
                self._self_container, self._self_name = None, who

    @property
    def containers(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._containers)

    # -- the metadata tree -----------------------------------------------------------
    def tree(self, version: str = LATEST) -> dict[str, Any]:
        """The whole answer tree for one metadata version, as the service would expose it."""
        with self._lock:
            containers = copy.deepcopy(self._containers)
            me = copy.deepcopy(self._self_container)
            if me is None and self._self_name is not None:
                me = next((c for c in containers if c.get("name") == self._self_name), None)
        service: dict[str, Any] = {
            "containers": (
                [c.get("name") for c in containers] if version == VERSIONS[0] else containers
            ),
            "create_index": 1,
            "external_ips": None,
            "fqdn": None,
            "health_check": None,
            "hostname": None,
            "kind": "service",
            "labels": {},
            "links": {},
            "metadata": {},
            "name": self.service_name,
            "ports": [],
            "scale": len(containers),
            "sidekicks": None,
            "stack_name": self.stack_name,
            "stack_uuid": str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"stack:{self.stack_name}")),
            "state": "active",
            "uuid": str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"svc:{self.service_name}")),
        }
        stack = {
            "environment_name": "Default",
            "name": self.stack_name,
            "services": [self.service_name],
            "uuid": service["stack_uuid"],
        }
        host = {
            "agent_ip": "10.230.254.1",
            "hostname": "rancher-host-1",
            "labels": {},
            "name": "rancher-host-1",
            "uuid": "8e7c1b2a-0000-4000-8000-000000000001",
        }
        self_part: dict[str, Any] = {"service": service, "stack": stack, "host": host}
        if me is not None:
            self_part["container"] = me
        return {
            "containers": containers,
            "hosts": [host],
            "self": self_part,
            "services": [service],
            "stacks": [stack],
            "version": version,
        }

    # -- HTTP ------------------------------------------------------------------------
    def respond(self, request: Request) -> Response:
        wants_json = "application/json" in (request.header("accept") or "")
        if request.method not in ("GET", "HEAD"):
            return Response(405, "Method Not Allowed\n")
        segments = [unquote_plus(s) for s in request.path.strip("/").split("/") if s]
        if not segments:
            versions = {v: f"/{v}" for v in (*VERSIONS, "latest")}
            return _render(versions, wants_json)
        version, path = segments[0], segments[1:]
        if version == "latest":
            version = LATEST
        if version not in VERSIONS:
            return _error("Invalid version", 404, wants_json)
        found, value = _walk(self.tree(version), path)
        if not found:
            return _error("Not found", 404, wants_json)
        return _render(value, wants_json)


def _walk(node: Any, path: Sequence[str]) -> tuple[bool, Any]:
    for key in path:
        if isinstance(node, dict):
            if key not in node:
                return False, None
            node = node[key]
        elif isinstance(node, list):
            if key.isdigit() and int(key) < len(node):
                node = node[int(key)]
                continue
            match = next(
                (
                    item
                    for item in node
                    if isinstance(item, dict)
                    and any(item.get(magic) == key for magic in MAGIC_ARRAY_KEYS)
                ),
                None,
            )
            if match is None:
                return False, None
            node = match
        else:
            return False, None
    return True, node


def _render(value: Any, wants_json: bool) -> Response:
    if wants_json:
        return Response(200, json.dumps(value), content_type="application/json")
    return Response(200, _text(value))


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, dict):
        lines = sorted(
            quote_plus(k) + ("/" if isinstance(v, dict | list) else "") for k, v in value.items()
        )
        return "".join(f"{line}\n" for line in lines)
    out = []
    for index, item in enumerate(value):
        magic = next(
            (item[k] for k in MAGIC_ARRAY_KEYS if isinstance(item, dict) and k in item), None
        )
        if magic is not None:
            out.append(f"{index}={quote_plus(str(magic))}\n")
        elif isinstance(item, dict | list):
            out.append(f"{index}/\n")
        else:
            out.append(f"{index}\n")
    return "".join(out)


def _error(message: str, status: int, wants_json: bool) -> Response:
    if wants_json:
        body = json.dumps({"code": status, "message": message, "type": "error"})
        return Response(status, body + "\n", content_type="application/json")
    return Response(status, message + "\n")
