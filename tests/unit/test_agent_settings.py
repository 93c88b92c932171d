"""The agent's settings table and the peer-source registry: everything derived agrees."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from pathlib import Path

import pytest

from beamfleet.runtime.discovery import sources as sources_pkg
from beamfleet.runtime.discovery.config import AgentConfig, load_config
from beamfleet.runtime.discovery.errors import ConfigError
from beamfleet.runtime.discovery.peers import PeerNaming
from beamfleet.runtime.discovery.settings import (
    OPTIONS_MARKERS,
    SETTINGS,
    SOURCES_MARKERS,
    between,
    options_markdown,
    render_docs,
    setting,
    sources_markdown,
)
from beamfleet.runtime.discovery.sources import (
    REGISTRY,
    Source,
    StubResolver,
    build_source,
    source_problems,
    split_source,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "agent.md"
REGENERATE = (
    "docs/agent.md is out of date with the settings/peer-source declarations; regenerate it: "
    "PYTHONPATH=plugins python -m beamfleet.runtime.discovery.settings --write-docs docs/agent.md"
)


def _cookie(tmp_path: Path) -> dict[str, str]:
    cookie = tmp_path / "cookie"
    cookie.write_text("secret")
    return {"BEAMFLEET_COOKIE_FILE": str(cookie)}


# ---- the settings table -----------------------------------------------------------------


def test_docs_tables_match_the_declarations() -> None:
    text = DOCS.read_text()
    assert between(text, OPTIONS_MARKERS) == options_markdown(), REGENERATE
    assert between(text, SOURCES_MARKERS) == sources_markdown(), REGENERATE
    assert render_docs(text) == text, REGENERATE


def test_docs_table_has_one_row_per_setting_with_its_env_var() -> None:
    rows = options_markdown().splitlines()[2:]
    assert len(rows) == len(SETTINGS)
    for row, s in zip(rows, SETTINGS, strict=True):
        assert row.startswith(f"| `{s.flag}")
        assert f"`{s.env}`" in row


def test_names_flags_and_env_vars_are_derived_and_unique() -> None:
    assert setting("dns_timeout").flag == "--dns-timeout"
    assert setting("dns_timeout").env == "BEAMFLEET_DNS_TIMEOUT"
    assert setting("source").env == "BEAMFLEET_SOURCES"  # repeatable: plural, space-separated
    for attr in ("name", "flag", "env"):
        values = [getattr(s, attr) for s in SETTINGS]
        assert len(values) == len(set(values)), attr


def test_agent_config_fields_are_exactly_the_declared_ones() -> None:
    declared = {s.config_field for s in SETTINGS if s.config_field}
    assert {f.name for f in dataclasses.fields(AgentConfig)} == declared


def test_agent_config_defaults_come_from_the_declarations() -> None:
    config = AgentConfig(sources=[], cookie_file=Path("/c"))
    for s in SETTINGS:
        if s.config_field and not s.required:
            assert getattr(config, s.config_field) == s.default_value(), s.name
    assert config.listen[1] == 9568 and config.epmd_port == 4369
    assert config.naming == PeerNaming("ip") and config.nameservers == []


def test_every_default_passes_its_own_checks() -> None:
    for s in SETTINGS:
        if s.default in (None, ""):
            continue
        assert isinstance(s.default, s.type), s.name
        assert not s.choices or s.default in s.choices, s.name
        assert s.check is None or s.check(s.default) is None, s.name


def test_help_text_gets_the_default_and_env_var_appended() -> None:
    assert setting("max_parallel").cli_help == (
        "Connects in flight per node (default 16, env BEAMFLEET_MAX_PARALLEL)."
    )
    assert "(required, env BEAMFLEET_COOKIE_FILE)" in setting("cookie_file").cli_help
    assert "default 2 s" in setting("dns_timeout").cli_help
    assert "default off" in setting("allow_empty").cli_help


def test_bounds_apply_to_env_and_toml_values_too(tmp_path: Path) -> None:
    toml = tmp_path / "a.toml"
    toml.write_text("jitter = 1.5\nbogus = 1\nconfig = 'x'\n")
    env = {**_cookie(tmp_path), "BEAMFLEET_MAX_PARALLEL": "0", "BEAMFLEET_LOG_LEVEL": "loud"}
    with pytest.raises(ConfigError) as err:
        load_config({}, ["static:app@h"], env=env, config_file=str(toml))
    problems = err.value.problems
    assert "--max-parallel must be >= 1, got 0" in problems
    assert "--jitter must be in [0, 1), got 1.5" in problems
    assert any("--log-level 'loud'" in p for p in problems)
    assert any("unknown key 'bogus'" in p for p in problems)
    assert any("unknown key 'config'" in p for p in problems)  # --config is not a TOML key


def test_every_scalar_setting_is_read_from_flag_env_and_toml(tmp_path: Path) -> None:
    samples = {"int": ("7", 7), "float": ("0.5", 0.5), "bool": ("true", True)}
    env_base = _cookie(tmp_path)
    for s in SETTINGS:
        if s.type.__name__ not in samples or not s.config_field:
            continue
        text, value = samples[s.type.__name__]
        from_env = load_config({}, ["static:app@h"], env={**env_base, s.env: text})
        assert getattr(from_env, s.config_field) == value, s.env
        toml = tmp_path / f"{s.name}.toml"
        toml.write_text(f"{s.toml_key} = {text}\n")
        from_toml = load_config({}, ["static:app@h"], env=env_base, config_file=str(toml))
        assert getattr(from_toml, s.config_field) == value, s.toml_key
        from_flag = load_config(
            {s.name: value}, ["static:app@h"], env={**env_base, s.env: "nonsense"}
        )
        assert getattr(from_flag, s.config_field) == value, s.flag


# ---- the peer-source registry -----------------------------------------------------------


def test_every_registered_kind_has_an_example_that_parses_and_builds() -> None:
    assert list(REGISTRY) == ["dns", "srv", "rancher", "static", "file", "epmd"]
    for kind, declared in REGISTRY.items():
        parsed_kind, arg = split_source(declared.example_spec)
        assert parsed_kind == kind
        assert source_problems(kind, arg, "app") == [], kind
        source = build_source(
            kind,
            arg,
            basename="app",
            naming=PeerNaming("ip"),
            resolver=lambda: StubResolver([("127.0.0.1", 53)]),
        )
        assert isinstance(source, Source)
        assert source.label.startswith(kind), source.label


def test_validation_messages_come_from_the_declarations() -> None:
    for kind, declared in REGISTRY.items():
        problems = source_problems(kind, "", None)
        needs_arg = any(
            f"{kind} needs an argument, e.g. {declared.example_spec}" in p for p in problems
        )
        assert needs_arg == declared.arg_required, kind
        assert any("needs --basename" in p for p in problems) == declared.needs_basename, kind
    [unknown] = source_problems("nope", "x", "app")
    assert "unknown kind 'nope'" in unknown
    assert all(k.usage in unknown for k in REGISTRY.values())


def test_every_source_module_with_a_declaration_is_registered() -> None:
    declared = []
    for info in pkgutil.iter_modules(sources_pkg.__path__):
        module = importlib.import_module(f"{sources_pkg.__name__}.{info.name}")
        kind = getattr(module, "SOURCE_KIND", None)
        if kind is not None:
            declared.append(kind)
            assert REGISTRY.get(kind.kind) is kind, info.name
    assert len(declared) == len(REGISTRY)
