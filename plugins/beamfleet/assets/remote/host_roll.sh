#!/bin/sh
# Start or roll one host's node, gated on the mesh, with rollback.
#
# The node's unit and environment (CONFIG) reach the host as <file>.staged: only this
# script puts them in place, right before it (re)starts the node, so what is in place is
# always what the node runs with.
#
# start: put the staged CONFIG in place, point CURRENT at TARGET, enable and start UNIT.
#        No gate: every new node starts at once (check.py proves the mesh).
# restart: the same, restarting a running UNIT, no gate (a switch between TCP and TLS
#        distribution, which cannot connect to each other).
# roll:  1. Wait until the mesh is complete without touching this node (a host that is
#           still coming back is waited for; rolling now would take a second node out).
#        2. Put the staged CONFIG in place (the replaced files kept as <file>.previous),
#           point CURRENT at TARGET, restart UNIT (the node stops cleanly: one nodedown).
#        3. Wait until every node of NODES_FILE lists every other one, this node included.
#        4. If it does not within TIMEOUT seconds: put back the previous release and
#           CONFIG, restart, wait again, and fail naming NODE and what the gate saw.
#
# usage: host_roll.sh start|restart|roll CURRENT TARGET UNIT NODES_FILE COOKIE TIMEOUT NODE [CONFIG...]
set -u
[ $# -ge 8 ] || {
    echo "usage: $0 start|restart|roll CURRENT TARGET UNIT NODES_FILE COOKIE TIMEOUT NODE [CONFIG...]" >&2
    exit 2
}
mode=$1 current=$2 target=$3 unit=$4 nodes=$5 cookie=$6 timeout=$7 node=$8
shift 8
beamfleet=/opt/beamfleet/bin/beamfleet

etc=${cookie%/*}
gate() { # seconds -> prints what was missing on failure
    # TLS distribution when the node's environment in place says so (the agent's files)
    if grep -qs '^BEAMFLEET_DIST_TLS_CERT=' "$etc/node.env"; then
        export BEAMFLEET_TLS_CERT="$etc/tls/agent.pem" BEAMFLEET_TLS_KEY="$etc/tls/agent.pem"
        export BEAMFLEET_TLS_CA="$etc/tls/ca.pem"
    else
        unset BEAMFLEET_TLS_CERT BEAMFLEET_TLS_KEY BEAMFLEET_TLS_CA
    fi
    { "$beamfleet" mesh --nodes-file "$nodes" --cookie-file "$cookie" --timeout "$1" >/dev/null; } 2>&1
}
switch() {
    ln -sfn "$1" "$current.new" && mv -T "$current.new" "$current"
}
install_staged() { # CONFIG... : staged files in place, the replaced ones kept
    for f do
        [ -f "$f.staged" ] || continue
        if [ -f "$f" ]; then cp -p "$f" "$f.previous"; else rm -f "$f.previous"; fi
        mv -f "$f.staged" "$f"
    done
}
restore_previous() { # CONFIG... : prints the names of the files put back
    for f do
        if [ -f "$f.previous" ]; then
            mv -f "$f.previous" "$f" && printf ' %s' "${f##*/}"
        fi
    done
}
forget_previous() {
    for f do rm -f "$f.previous"; done
}

case $mode in
start)
    install_staged "$@"
    forget_previous "$@"
    switch "$target" && systemctl daemon-reload && systemctl enable --now "$unit"
    exit ;;
restart)
    install_staged "$@"
    forget_previous "$@"
    switch "$target" && systemctl daemon-reload && systemctl enable "$unit" &&
        systemctl restart "$unit"
    exit ;;
roll) ;;
*) echo "$0: unknown mode $mode (start, restart or roll)" >&2; exit 2 ;;
esac

previous=$(readlink "$current" 2>/dev/null || true)
if ! seen=$(gate "$timeout"); then
    echo "$node: not rolled, the mesh was not complete before it (waited ${timeout} s):" >&2
    echo "$seen" >&2
    exit 1
fi
install_staged "$@"
systemctl daemon-reload
switch "$target" || exit 1
systemctl reset-failed "$unit" 2>/dev/null || true
systemctl restart "$unit"
if seen=$(gate "$timeout"); then
    forget_previous "$@"
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
journalctl -u "$unit" -n 15 --no-pager -o cat >&2 2>/dev/null || true
restored=$(restore_previous "$@")
[ -z "$restored" ] || systemctl daemon-reload
[ -z "$previous" ] || switch "$previous"
# a node that kept crashing may have hit systemd's start limit: clear it
systemctl reset-failed "$unit" 2>/dev/null || true
systemctl restart "$unit"
back="${previous##*/}${restored:+ and the previous$restored}"
if gate "$timeout" >/dev/null; then
    echo "$node: rolled back to $back, back in the complete mesh" >&2
else
    echo "$node: rolled back to $back, which has not rejoined the mesh either" >&2
fi
exit 1
