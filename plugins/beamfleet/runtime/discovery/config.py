"""Agent configuration from flags, ``BEAMFLEET_*`` env vars and an optional TOML file.

Precedence: flag > env var > TOML file > default. :func:`load_config` validates all of it
before anything starts and raises one :class:`ConfigError` listing every problem.

TOML example::

    interval = 1.0
    ownership = "all"
    cookie_file = "/run/secrets/erlang_cookie"
    listen = "0.0.0.0:9568"
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
from beamfleet.runtime.discovery.ownership import MODES
from beamfleet.runtime.discovery.peers import PeerNaming
from beamfleet.runtime.discovery.server import parse_listen
from beamfleet.runtime.discovery.sources import KINDS, source_problems
from beamfleet.runtime.discovery.sources.resolver import parse_nameserver

DEFAULT_LISTEN = "127.0.0.1:9568"


@dataclass(frozen=True)
class SourceSpec:
    kind: str
    arg: str
    basename: str | None


@dataclass(frozen=True)
class AgentConfig:
    sources: list[SourceSpec]
    cookie_file: Path
    ownership: str = "all"
    interval: float = 1.0
    jitter: float = 0.1
    listen: tuple[str, int] = ("127.0.0.1", 9568)
    naming: PeerNaming = field(default_factory=lambda: PeerNaming("ip"))
    nameservers: list[tuple[str, int]] = field(default_factory=list)
    dns_timeout: float = 2.0
    connect_timeout: float = 3.0
    max_parallel: int = 16
    grace_polls: int = 3
    grace_seconds: float = 10.0
    allow_empty: bool = False
    backoff_max: float = 10.0
    agents_dns: str | None = None
    advertise: str | None = None
    epmd_port: int = 4369
    log_level: str = "info"


# option name -> (type, env var)
OPTIONS: dict[str, tuple[type, str]] = {
    "basename": (str, "BEAMFLEET_BASENAME"),
    "ownership": (str, "BEAMFLEET_OWNERSHIP"),
    "interval": (float, "BEAMFLEET_INTERVAL"),
    "jitter": (float, "BEAMFLEET_JITTER"),
    "cookie_file": (str, "BEAMFLEET_COOKIE_FILE"),
    "listen": (str, "BEAMFLEET_LISTEN"),
    "naming": (str, "BEAMFLEET_NAMING"),
    "nameserver": (str, "BEAMFLEET_NAMESERVER"),
    "dns_timeout": (float, "BEAMFLEET_DNS_TIMEOUT"),
    "connect_timeout": (float, "BEAMFLEET_CONNECT_TIMEOUT"),
    "max_parallel": (int, "BEAMFLEET_MAX_PARALLEL"),
    "grace_polls": (int, "BEAMFLEET_GRACE_POLLS"),
    "grace_seconds": (float, "BEAMFLEET_GRACE_SECONDS"),
    "allow_empty": (bool, "BEAMFLEET_ALLOW_EMPTY"),
    "backoff_max": (float, "BEAMFLEET_BACKOFF_MAX"),
    "agents_dns": (str, "BEAMFLEET_AGENTS_DNS"),
    "advertise": (str, "BEAMFLEET_ADVERTISE"),
    "epmd_port": (int, "BEAMFLEET_EPMD_PORT"),
    "log_level": (str, "BEAMFLEET_LOG_LEVEL"),
}
SOURCES_ENV = "BEAMFLEET_SOURCES"  # space-separated KIND:ARG list


def split_source(text: str) -> tuple[str, str]:
    kind, _, arg = text.partition(":")
    return kind.strip(), arg.strip()


def _coerce(name: str, value: Any, problems: list[str], origin: str) -> Any:
    kind, _ = OPTIONS[name]
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off", ""):
            return False
        problems.append(f"{origin}: {name} must be true or false, got {value!r}")
        return None
    try:
        out = kind(value)
    except (TypeError, ValueError):
        problems.append(f"{origin}: {name} must be {kind.__name__}, got {value!r}")
        return None
    if isinstance(out, float) and not math.isfinite(out):
        problems.append(f"{origin}: {name} must be a finite number")
        return None
    return out


def load_config(
    flags: dict[str, Any],
    flag_sources: list[str],
    env: dict[str, str] | None = None,
    config_file: str | None = None,
) -> AgentConfig:
    """Merge flags, env and TOML; validate; return the config or raise ConfigError.

    Args:
        flags: option name -> value given on the command line (None when not given).
        flag_sources: the ``--source`` values, in order.
        env: the environment (default ``os.environ``).
        config_file: a TOML file (``--config`` or ``$BEAMFLEET_CONFIG``), optional.
    """
    env = dict(os.environ if env is None else env)
    problems: list[str] = []
    toml: dict[str, Any] = {}
    config_file = config_file or env.get("BEAMFLEET_CONFIG") or None
    if config_file:
        try:
            toml = tomllib.loads(Path(config_file).read_text())
        except OSError as exc:
            problems.append(f"--config {config_file}: cannot read it ({exc.strerror})")
        except tomllib.TOMLDecodeError as exc:
            problems.append(f"--config {config_file}: not valid TOML ({exc})")
    unknown = set(toml) - set(OPTIONS) - {"source"}
    problems += [f"--config {config_file}: unknown key {k!r}" for k in sorted(unknown)]

    values: dict[str, Any] = {}
    for name, (_, var) in OPTIONS.items():
        if flags.get(name) is not None:
            values[name] = _coerce(name, flags[name], problems, f"--{name.replace('_', '-')}")
        elif env.get(var):
            values[name] = _coerce(name, env[var], problems, f"${var}")
        elif name in toml:
            values[name] = _coerce(name, toml[name], problems, f"{config_file}")
    basename = values.get("basename")

    specs: list[SourceSpec] = []
    raw = list(flag_sources) or env.get(SOURCES_ENV, "").split()
    for text in raw:
        kind, arg = split_source(text)
        problems += source_problems(kind, arg, basename)
        specs.append(SourceSpec(kind, arg, basename))
    if not raw:
        for i, item in enumerate(toml.get("source", [])):
            if not isinstance(item, dict) or "kind" not in item:
                problems.append(f'{config_file}: [[source]] #{i + 1} needs kind = "..."')
                continue
            kind, arg = str(item["kind"]), str(item.get("arg", ""))
            b = item.get("basename", basename)
            problems += source_problems(kind, arg, b)
            specs.append(SourceSpec(kind, arg, b))
    if not specs:
        problems.append("no source: pass --source KIND:ARG (kinds: " + ", ".join(KINDS) + ")")

    cookie = values.get("cookie_file")
    if not cookie:
        problems.append(
            "no cookie file: pass --cookie-file PATH or set BEAMFLEET_COOKIE_FILE "
            "(the cookie is read from a file only)"
        )
    elif not Path(cookie).is_file():
        problems.append(f"--cookie-file {cookie}: no such file")

    ownership = values.get("ownership") or "all"
    if ownership not in MODES:
        problems.append(f"--ownership {ownership!r}: use one of {', '.join(MODES)}")
    if ownership == "rendezvous" and not values.get("agents_dns"):
        problems.append(
            "--ownership rendezvous needs --agents-dns NAME (the agents' own "
            "DNS name, e.g. tasks.beamfleet-agent)"
        )
    for name, low in (
        ("interval", 0.05),
        ("connect_timeout", 0.05),
        ("dns_timeout", 0.05),
        ("grace_seconds", 0.0),
        ("backoff_max", 0.05),
    ):
        v = values.get(name)
        if v is not None and v < low:
            problems.append(f"--{name.replace('_', '-')} must be >= {low}, got {v}")
    jitter = values.get("jitter")
    if jitter is not None and not 0 <= jitter < 1:
        problems.append(f"--jitter must be in [0, 1), got {jitter}")
    for name in ("max_parallel", "grace_polls"):
        v = values.get(name)
        if v is not None and v < 1:
            problems.append(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    listen = ("127.0.0.1", 9568)
    try:
        listen = parse_listen(values.get("listen") or DEFAULT_LISTEN)
    except ValueError as exc:
        problems.append(str(exc))
    naming = PeerNaming("ip")
    try:
        naming = PeerNaming.parse(values.get("naming") or "ip")
    except ConfigError as exc:
        problems += exc.problems
    nameservers = []
    for ns in (values.get("nameserver") or "").replace(",", " ").split():
        try:
            nameservers.append(parse_nameserver(ns))
        except ConfigError as exc:
            problems += exc.problems
    if values.get("log_level", "info") not in ("info", "debug"):
        problems.append("--log-level must be info or debug")
    if problems:
        raise ConfigError(problems)
    kw = {
        k: v
        for k, v in values.items()
        if k
        in (
            "interval",
            "jitter",
            "dns_timeout",
            "connect_timeout",
            "max_parallel",
            "grace_polls",
            "grace_seconds",
            "allow_empty",
            "backoff_max",
            "agents_dns",
            "advertise",
            "epmd_port",
            "log_level",
        )
        and v is not None
    }
    return AgentConfig(
        sources=specs,
        cookie_file=Path(str(cookie)),
        ownership=ownership,
        listen=listen,
        naming=naming,
        nameservers=nameservers,
        **kw,
    )
