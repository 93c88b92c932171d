"""Each inventory key is declared once: the docs' tables and the settings' defaults follow."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from beamfleet.controller import key_docs
from beamfleet.controller.deploys.agent import AGENT_KEYS, AgentSettings
from beamfleet.controller.deploys.app import APP_KEYS, AppSettings
from beamfleet.controller.deploys.cluster import CLUSTER_RUN_KEYS
from beamfleet.controller.deploys.host_mode import HOST_KEYS
from beamfleet.controller.deploys.maintenance import MAINTENANCE_KEYS
from beamfleet.controller.deploys.swarm import SWARM_KEYS
from beamfleet.controller.inventory import KNOWN_KEYS, KeySpec, KeyTable, KeyTableError
from beamfleet.controller.operations.swarm import DEFAULT_ADDR_POOL
from beamfleet.runtime.constants import AGENT_PORT

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("document", sorted(key_docs.DOCUMENTS))
def test_the_docs_key_tables_match_the_declarations(document: str) -> None:
    text = (ROOT / document).read_text()
    wanted = key_docs.with_tables(text, key_docs.DOCUMENTS[document], document)
    assert text == wanted, (
        f"{document}: the inventory key table differs from the key declarations; "
        f"regenerate it from the repository root with `{key_docs.REGENERATE}`"
    )


def test_every_declared_key_is_documented_once_and_known_to_the_validation() -> None:
    tables = [SWARM_KEYS, *CLUSTER_RUN_KEYS, HOST_KEYS, MAINTENANCE_KEYS]
    names = [spec.name for table in tables for spec in table]
    assert len(names) == len(set(names)), "a key is declared in two tables"
    for name in names:
        assert KNOWN_KEYS[name] is next(s for t in tables for s in t if s.name == name)
    docs = "".join((ROOT / d).read_text() for d in key_docs.DOCUMENTS)
    for name in names:
        assert docs.count(f"| `{name}` |") == 1, name


def test_settings_defaults_are_the_declared_ones() -> None:
    app, agent = AppSettings(), AgentSettings()
    for field in dataclasses.fields(AppSettings):
        key = f"app_{field.name}"
        if key in {s.name for s in APP_KEYS} and APP_KEYS.default(key) is not None:
            assert getattr(app, field.name) == APP_KEYS.default(key), key
    assert (app.basename, app.network) == ("demo", "beamfleet-demo")
    assert AppSettings(name="shop").network == "beamfleet-shop"
    assert agent.port == AGENT_KEYS.default("agent_port") == AGENT_PORT
    assert agent.interval == AGENT_KEYS.default("agent_interval")
    assert SWARM_KEYS.default("swarm_default_addr_pool") == DEFAULT_ADDR_POOL


def test_a_dict_default_is_never_shared() -> None:
    first = APP_KEYS.value({}, "app_env")
    first["X"] = "1"
    assert APP_KEYS.value({}, "app_env") == {} == AppSettings().env


def test_values_come_from_host_data_else_the_default() -> None:
    assert APP_KEYS.value({"app_replicas": 6}, "app_replicas") == 6
    assert APP_KEYS.value({"app_replicas": None}, "app_replicas") == 3


def test_a_table_refuses_duplicates_and_unknown_names() -> None:
    spec = KeySpec("k", (int,), "a key", 1)
    with pytest.raises(KeyTableError, match="declares `k` twice"):
        KeyTable("T", (spec, spec))
    with pytest.raises(KeyTableError, match="has no key `nope`"):
        KeyTable("T", (spec,)).default("nope")


def test_markdown_escapes_pipes_and_shows_defaults() -> None:
    table = KeyTable(
        "T",
        (
            KeySpec("flag", (bool,), "a | b", False),
            KeySpec("n", (int, float), "n", default_doc="derived"),
        ),
    )
    assert table.markdown().splitlines()[2:] == [
        "| `flag` | bool | `false` | a \\| b |",
        "| `n` | int or float | derived | n |",
    ]


def test_missing_markers_are_reported() -> None:
    with pytest.raises(key_docs.MarkersError, match=r"docs/x\.md: put the key table between"):
        key_docs.with_tables("no markers", (SWARM_KEYS,), "docs/x.md")
