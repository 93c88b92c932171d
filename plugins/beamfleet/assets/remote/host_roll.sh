#!/bin/sh
# Start or roll one host's node, gated on the mesh, with rollback.
#
# The node's unit and environment, and the port mapper's unit (CONFIG), reach a host
# whose node runs as <file>.staged: only this script puts them in place, right before it
# (re)starts the node, so what is in place is always what the node runs with. A CONFIG
# file named <unit>.service other than UNIT's is another unit's (the port mapper's): when
# its staged version is put in place, that unit restarts in the same systemctl call as
# UNIT, never alone. A restarted port mapper forgets the registration of the node running
# on it, which no peer (nor the gate) could then reach: the node restarts with it (its
# unit is ordered After= the port mapper: it stops first and starts last).
#
# start: put the staged CONFIG in place, point CURRENT at TARGET, enable and start UNIT.
#        No gate: every new node starts at once (check.py proves the mesh).
# restart: the same, restarting a running UNIT, no gate (a switch between TCP and TLS
#        distribution, which cannot connect to each other).
# roll:  1. Wait until the mesh is complete without touching this node (a host that is
#           still coming back is waited for; rolling now would take a second node out).
#        2. Put the staged CONFIG in place (the replaced files kept as <file>.previous),
#           point CURRENT at TARGET, restart UNIT (the node stops cleanly: one nodedown)
#           and the units whose files were put in place.
#        3. Wait until every node of NODES_FILE lists every other one, this node included.
#        4. If it does not within TIMEOUT seconds: put back the previous release and
#           CONFIG, restart the same units, wait again, and fail naming NODE and what the
#           gate saw.
#        The releases kept are the running one and the one before it (all of them when the
#        roll changed CONFIG only: TARGET is the release that was running).
#
# usage: host_roll.sh start|restart|roll CURRENT TARGET UNIT NODES_FILE COOKIE TIMEOUT NODE [CONFIG...]
set -u
[ $# -ge 8 ] || {
    echo "usage: $0 start|restart|roll CURRENT TARGET UNIT NODES_FILE COOKIE TIMEOUT NODE [CONFIG...]" >&2
    exit 2
}
mode=$1 current=$2 target=$3 unit=$4 nodes=$5 cookie=$6 timeout=$7 node=$8
shift 8
# TARGET is one entry of the releases directory beside CURRENT, never another path: a
# successful roll removes TARGET's siblings, which must only ever be older releases
releases=${current%/*}/releases
case ${target#"$releases"/} in
"$target" | "" | */* | . | .. | -*)
    echo "$0: release $target is not an entry of $releases" >&2
    exit 2 ;;
esac
if [ ! -d "$target" ] || [ -L "$target" ]; then
    echo "$0: release $target is not an unpacked release directory" >&2
    exit 2
fi
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
install_staged() { # CONFIG... : staged files in place, the replaced ones kept; sets
    installed=     # $installed to the names of the files put in place
    for f do
        [ -f "$f.staged" ] || continue
        if [ -f "$f" ]; then cp -p "$f" "$f.previous"; else rm -f "$f.previous"; fi
        mv -f "$f.staged" "$f" && installed="$installed ${f##*/}"
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
along() { # file names -> the units among them other than UNIT (those restart with it)
    for n do
        case $n in "$unit") ;; *.service) printf ' %s' "$n" ;; esac
    done
}
restart_node() { # [UNIT...] : (re)start UNIT with these, in one call, from a clean state
    # a node that kept crashing may have hit systemd's start limit: clear it
    systemctl reset-failed "$@" "$unit" 2>/dev/null || true
    systemctl restart "$@" "$unit"
}

# the names split into words on purpose: file and unit names hold no spaces
# shellcheck disable=SC2046,SC2086
case $mode in
start)
    install_staged "$@"
    forget_previous "$@"
    # no node runs yet: a changed port mapper can restart on its own
    others=$(along $installed)
    switch "$target" && systemctl daemon-reload &&
        { [ -z "$others" ] || systemctl restart $others; } && systemctl enable --now "$unit"
    exit ;;
restart)
    install_staged "$@"
    forget_previous "$@"
    switch "$target" && systemctl daemon-reload && systemctl enable "$unit" &&
        restart_node $(along $installed)
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
# shellcheck disable=SC2046,SC2086
restart_node $(along $installed)
if seen=$(gate "$timeout"); then
    forget_previous "$@"
    # keep the running release and the one before it; a roll of the same release (its
    # CONFIG changed only) keeps the one that ran before it too: it removes nothing
    keep_a=${target##*/} keep_b=${previous##*/}
    if [ "$keep_a" != "$keep_b" ]; then
        for r in "${target%/*}"/*; do
            case ${r##*/} in "$keep_a" | "$keep_b") ;; *) rm -rf "$r" ;; esac
        done
    fi
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
# the port mapper put back restarts with the node again
# shellcheck disable=SC2046,SC2086
restart_node $(along $restored)
back="${previous##*/}${restored:+ and the previous$restored}"
if gate "$timeout" >/dev/null; then
    echo "$node: rolled back to $back, back in the complete mesh" >&2
else
    echo "$node: rolled back to $back, which has not rejoined the mesh either" >&2
fi
exit 1
