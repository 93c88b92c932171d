#!/bin/sh
# Entrypoint of the demo image: cookie from the Docker secret, node name from the
# container's address on the application's overlay network, then the release.
#
#   BEAMFLEET_COOKIE_FILE  the secret file (default /run/secrets/erlang_cookie)
#   BEAMFLEET_CIDR         the overlay subnet the node name's address is taken from
#   BEAMFLEET_BASENAME     the node's alive name (default demo)
set -eu

cookie_file="${BEAMFLEET_COOKIE_FILE:-/run/secrets/erlang_cookie}"
if [ ! -r "$cookie_file" ]; then
  echo "demo: cookie file $cookie_file is not readable: give the service the cookie secret" \
       "(beamfleet's cluster deploy does) or set BEAMFLEET_COOKIE_FILE" >&2
  exit 78
fi
if [ -z "${BEAMFLEET_CIDR:-}" ]; then
  echo "demo: BEAMFLEET_CIDR is not set: give the overlay subnet the node name is taken from" >&2
  exit 78
fi
# erl reads $HOME/.erlang.cookie when it is given no -setcookie: the cookie never
# appears in a process's arguments or environment. A symlink, so it is never copied.
ln -sf "$cookie_file" "$HOME/.erlang.cookie"

exec beamfleet-nodename --basename "${BEAMFLEET_BASENAME:-demo}" --cidr "$BEAMFLEET_CIDR" \
  --format env --exec -- /app/bin/demo "${@:-start}"
