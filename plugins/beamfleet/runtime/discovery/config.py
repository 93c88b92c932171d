"""Agent configuration from flags, ``BEAMFLEET_*`` env vars and an optional TOML file.

What each option is (type, default, bounds, env var, TOML key) is declared once in
:mod:`beamfleet.runtime.discovery.settings`; this module merges and validates values.

Precedence: flag > env var > TOML file > default. :func:`load_config` validates all of it
before anything starts and raises one :class:`ConfigError` listing every problem.

TOML example (keys are the settings' names)::

    interval = 1.0
    ownership = "all"
    cookie_file = "/etc/beamfleet/cookie"
    [[source]]
    kind = "dns"
    arg = "tasks.app"
    basename = "app"
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from beamfleet.runtime.discovery.errors import ConfigError
from beamfleet.runtime.discovery.peers import PeerNaming
from beamfleet.runtime.discovery.settings import SETTINGS, Setting, setting
from beamfleet.runtime.discovery.sources import (
    KINDS,
    SourceSpec,
    source_problems,
    split_source,
)
from beamfleet.runtime.discovery.sources.subnet import Network

__all__ = [
    "DEFAULT_LISTEN",
    "SOURCES_ENV",
    "AgentConfig",
    "SourceSpec",
    "load_config",
    "split_source",
]

DEFAULT_LISTEN: str = setting("listen").default
SOURCES_ENV = setting("source").env  # space-separated KIND:ARG list
CONFIG_ENV = setting("config").env


@dataclass(frozen=True)
class AgentConfig:
    """The validated configuration; its defaults come from the settings' declarations.

    Every field is the ``config_field`` of one entry of ``SETTINGS`` (a unit test checks
    that the two agree), so agent code reads typed attributes.
    """

    sources: list[SourceSpec]
    cookie_file: Path
    ownership: str = field(default_factory=setting("ownership").default_value)
    interval: float = field(default_factory=setting("interval").default_value)
    jitter: float = field(default_factory=setting("jitter").default_value)
    tls_cert: Path | None = field(default_factory=setting("tls_cert").default_value)
    tls_key: Path | None = field(default_factory=setting("tls_key").default_value)
    tls_ca: Path | None = field(default_factory=setting("tls_ca").default_value)
    listen: tuple[str, int] = field(default_factory=setting("listen").default_value)
    naming: PeerNaming = field(default_factory=setting("naming").default_value)
    nameservers: list[tuple[str, int]] = field(default_factory=setting("nameserver").default_value)
    subnets: tuple[Network, ...] = field(default_factory=setting("subnet").default_value)
    dns_timeout: float = field(default_factory=setting("dns_timeout").default_value)
    connect_timeout: float = field(default_factory=setting("connect_timeout").default_value)
    max_parallel: int = field(default_factory=setting("max_parallel").default_value)
    grace_polls: int = field(default_factory=setting("grace_polls").default_value)
    grace_seconds: float = field(default_factory=setting("grace_seconds").default_value)
    max_removal_fraction: float = field(
        default_factory=setting("max_removal_fraction").default_value
    )
    allow_empty: bool = field(default_factory=setting("allow_empty").default_value)
    status_public: bool = field(default_factory=setting("status_public").default_value)
    backoff_max: float = field(default_factory=setting("backoff_max").default_value)
    agents_dns: str | None = field(default_factory=setting("agents_dns").default_value)
    advertise: str | None = field(default_factory=setting("advertise").default_value)
    epmd_port: int = field(default_factory=setting("epmd_port").default_value)
    log_level: str = field(default_factory=setting("log_level").default_value)


# the settings that take one value each, read from flag, env and TOML alike
_SCALARS = tuple(s for s in SETTINGS if not s.repeatable and s.in_toml)


def _coerce(s: Setting, value: Any, problems: list[str], origin: str) -> Any:
    """``value`` as ``s.type``, or None after adding a problem that names ``origin``."""
    if s.type is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off", ""):
            return False
        problems.append(f"{origin}: {s.name} must be true or false, got {value!r}")
        return None
    try:
        out = s.type(value)
    except (TypeError, ValueError):
        problems.append(f"{origin}: {s.name} must be {s.type.__name__}, got {value!r}")
        return None
    if isinstance(out, float) and not math.isfinite(out):
        problems.append(f"{origin}: {s.name} must be a finite number")
        return None
    return out


def _read_toml(config_file: str | None, problems: list[str]) -> dict[str, Any]:
    if not config_file:
        return {}
    try:
        toml = tomllib.loads(Path(config_file).read_text())
    except OSError as exc:
        problems.append(f"--config {config_file}: cannot read it ({exc.strerror})")
        return {}
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"--config {config_file}: not valid TOML ({exc})")
        return {}
    keys = {s.toml_key for s in SETTINGS if s.toml_key}
    problems += [f"--config {config_file}: unknown key {k!r}" for k in sorted(set(toml) - keys)]
    return toml


def _merge(
    flags: dict[str, Any], env: dict[str, str], toml: dict[str, Any], origin: str, p: list[str]
) -> dict[str, Any]:
    """The typed value of every scalar setting someone set (flag > env > TOML)."""
    values: dict[str, Any] = {}
    for s in _SCALARS:
        if flags.get(s.name) is not None:
            values[s.name] = _coerce(s, flags[s.name], p, s.flag)
        elif env.get(s.env):
            values[s.name] = _coerce(s, env[s.env], p, f"${s.env}")
        elif s.name in toml:
            values[s.name] = _coerce(s, toml[s.name], p, origin)
    return values


def _source_specs(
    flag_sources: list[str],
    *,
    env: dict[str, str],
    toml: dict[str, Any],
    basename: str | None,
    origin: str,
    problems: list[str],
) -> list[SourceSpec]:
    """The peer sources from ``--source``, else ``$BEAMFLEET_SOURCES``, else ``[[source]]``."""
    specs: list[SourceSpec] = []
    raw = list(flag_sources) or env.get(SOURCES_ENV, "").split()
    for text in raw:
        kind, arg = split_source(text)
        problems += source_problems(kind, arg, basename)
        specs.append(SourceSpec(kind, arg, basename))
    if raw:
        return specs
    for i, item in enumerate(toml.get("source", [])):
        if not isinstance(item, dict) or "kind" not in item:
            problems.append(f'{origin}: [[source]] #{i + 1} needs kind = "..."')
            continue
        kind, arg = str(item["kind"]), str(item.get("arg", ""))
        b = item.get("basename", basename)
        problems += source_problems(kind, arg, b)
        specs.append(SourceSpec(kind, arg, b))
    return specs


def _final(s: Setting, value: Any, problems: list[str]) -> Any:
    """The value ``AgentConfig`` holds for ``s`` (its default when unset), or None after
    adding a problem (missing although required, not a choice, out of bounds, unparsable)."""
    if value is None:
        if s.required:
            problems.append(f"no {s.name.replace('_', ' ')}: pass {s.flag} or set {s.env}")
        return s.default_value()
    if s.choices and value not in s.choices:
        problems.append(f"{s.flag} {value!r}: use one of {', '.join(s.choices)}")
        return None
    problem = s.check(value) if s.check else None
    if problem:
        problems.append(f"{s.flag} {problem}")
        return None
    try:
        return s.convert(value) if s.convert else value
    except ConfigError as exc:
        problems += exc.problems
    except ValueError as exc:
        problems.append(str(exc))
    return None


def _fields(values: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """AgentConfig field -> final value, for every scalar setting that fills one."""
    finals = [(s.config_field, _final(s, values.get(s.name), problems)) for s in _SCALARS]
    return {name: value for name, value in finals if name}


def load_config(
    flags: dict[str, Any],
    flag_sources: list[str],
    env: dict[str, str] | None = None,
    config_file: str | None = None,
) -> AgentConfig:
    """Merge flags, env and TOML; validate; return the config or raise ConfigError.

    Args:
        flags: setting name -> value given on the command line (None when not given).
        flag_sources: the ``--source`` values, in order.
        env: the environment (default ``os.environ``).
        config_file: a TOML file (``--config`` or ``$BEAMFLEET_CONFIG``), optional.

    Example::

        load_config({"interval": 0.5}, ["static:app@10.0.0.1"],
                    env={"BEAMFLEET_COOKIE_FILE": "/etc/beamfleet/cookie"})
    """
    env = dict(os.environ if env is None else env)
    problems: list[str] = []
    config_file = config_file or env.get(CONFIG_ENV) or None
    origin = f"{config_file}"
    toml = _read_toml(config_file, problems)
    values = _merge(flags, env, toml, origin, problems)
    specs = _source_specs(
        flag_sources,
        env=env,
        toml=toml,
        basename=values.get("basename"),
        origin=origin,
        problems=problems,
    )
    if not specs:
        problems.append(
            f"no source: pass --source KIND:ARG or set {SOURCES_ENV} (kinds: {', '.join(KINDS)})"
        )
    fields = _fields(values, problems)
    if fields.get("ownership") == "rendezvous" and not fields.get("agents_dns"):
        problems.append(
            "--ownership rendezvous needs --agents-dns NAME (the agents' own "
            "DNS name, e.g. tasks.beamfleet-agent)"
        )
    tls = [setting(name) for name in ("tls_cert", "tls_key", "tls_ca")]
    given = [s for s in tls if values.get(s.name) is not None]
    if given and len(given) < len(tls):
        problems.append(
            "TLS distribution needs --tls-cert, --tls-key and --tls-ca together; missing: "
            + ", ".join(s.flag for s in tls if s not in given)
        )
    if problems:
        raise ConfigError(problems)
    return AgentConfig(sources=specs, **fields)
