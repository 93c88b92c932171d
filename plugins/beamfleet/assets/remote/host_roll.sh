#!/bin/sh
# Roll one host's node to another release, gated on the mesh, with rollback.
#
#  1. Wait until the mesh is complete without touching this node (a host that is still
#     coming back is waited for; rolling now would take a second node out).
#  2. Point CURRENT at TARGET and restart UNIT (the node stops cleanly: one nodedown).
#  3. Wait until every node of NODES_FILE lists every other one, this node included.
#  4. If it does not within TIMEOUT seconds: point CURRENT back at the previous release,
#     restart, wait again, and fail naming NODE and what the gate saw.
#
# usage: host_roll.sh CURRENT TARGET UNIT NODES_FILE COOKIE TIMEOUT NODE
set -u
[ $# -eq 7 ] || { echo "usage: $0 CURRENT TARGET UNIT NODES_FILE COOKIE TIMEOUT NODE" >&2; exit 2; }
current=$1 target=$2 unit=$3 nodes=$4 cookie=$5 timeout=$6 node=$7
beamfleet=/opt/beamfleet/bin/beamfleet

gate() { # seconds -> prints what was missing on failure
    { "$beamfleet" mesh --nodes-file "$nodes" --cookie-file "$cookie" --timeout "$1" >/dev/null; } 2>&1
}
switch() {
    ln -sfn "$1" "$current.new" && mv -T "$current.new" "$current"
}

previous=$(readlink "$current" 2>/dev/null || true)
if ! seen=$(gate "$timeout"); then
    echo "$node: not rolled, the mesh was not complete before it (waited ${timeout} s):" >&2
    echo "$seen" >&2
    exit 1
fi
systemctl daemon-reload
switch "$target" || exit 1
systemctl restart "$unit"
if seen=$(gate "$timeout"); then
    # keep the running release and the one before it
    keep_a=${target##*/} keep_b=${previous##*/}
    for r in "${target%/*}"/*; do
        case ${r##*/} in "$keep_a" | "$keep_b") ;; *) rm -rf "$r" ;; esac
    done
    echo "$node: on ${target##*/}, in the complete mesh"
    exit 0
fi
echo "$node: release ${target##*/} did not join the complete mesh within ${timeout} s:" >&2
echo "$seen" >&2
echo "--- last lines of $unit:" >&2
journalctl -u "$unit" -n 15 --no-pager -o cat 2>/dev/null >&2 || true
if [ -n "$previous" ] && [ "$previous" != "$target" ]; then
    switch "$previous" && systemctl restart "$unit"
    if gate "$timeout" >/dev/null; then
        echo "$node: rolled back to ${previous##*/}, back in the complete mesh" >&2
    else
        echo "$node: rolled back to ${previous##*/}, which has not rejoined the mesh either" >&2
    fi
fi
exit 1
