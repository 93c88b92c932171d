#!/bin/sh
# What beamfleet's host mode needs to know about a host, in one round trip. One fact per
# line, "<tag> <value...>":
#   hostname NAME            the short host name
#   addr IP/PREFIX           each IPv4 address (from `ip`; without it `hostname -I`, no prefix)
#   current VERSION          the release `current` points at
#   release VERSION          each unpacked release
#   runtime DIGEST           the runtime wheel `current` points at
#   cookie DIGEST            SHA-256 of SALT followed by the cookie, trailing newlines
#                            dropped (never the cookie)
#   file PATH DIGEST         SHA-256 of each FILE that exists
#   active UNIT STATE        systemctl is-active of each UNIT
#   epmd PATH                a stable EPMD binary already on the host
#
# usage: host_state.sh APP_DIR COOKIE SALT [FILE...] -- [UNIT...]
set -u
[ $# -ge 3 ] || { echo "usage: $0 APP_DIR COOKIE SALT [FILE...] -- [UNIT...]" >&2; exit 2; }
app_dir=$1 cookie=$2 salt=$3
shift 3
echo "hostname $(hostname -s 2>/dev/null || hostname)"
if command -v ip >/dev/null 2>&1; then
    ip -o -4 addr show | awk '{ print "addr", $4 }'
else
    for a in $(hostname -I 2>/dev/null); do
        case $a in *:*) ;; *) echo "addr $a" ;; esac
    done
fi
current=$(readlink "$app_dir/current" 2>/dev/null) && echo "current ${current##*/}"
for r in "$app_dir"/releases/*; do
    [ -d "$r" ] && echo "release ${r##*/}"
done
runtime=$(readlink /opt/beamfleet/runtime/current 2>/dev/null) && echo "runtime ${runtime##*/}"
if [ -f "$cookie" ]; then
    # printf is the shell's own: the value is in no process's arguments. Trailing
    # newlines do not count (erl ignores them too).
    echo "cookie $(printf %s%s "$salt" "$(cat "$cookie")" | sha256sum | cut -c1-64)"
fi
while [ $# -gt 0 ] && [ "$1" != -- ]; do
    [ -f "$1" ] && echo "file $1 $(sha256sum <"$1" | cut -c1-64)"
    shift
done
[ $# -gt 0 ] && shift
for unit do
    echo "active $unit $(systemctl is-active "$unit" 2>/dev/null || true)"
done
[ -x /opt/beamfleet/bin/epmd ] && echo "epmd /opt/beamfleet/bin/epmd"
true
