#!/bin/sh
# Wait for the swarm to see a node that has just left as down (it takes a heartbeat or
# two): poll every half second, at most TRIES times. Exits 0 either way: the
# `docker node rm` that follows says why when the node is still up.
#
# usage: wait_node_down.sh NODE TRIES
set -eu
[ $# -eq 2 ] || { echo "usage: $0 NODE TRIES" >&2; exit 2; }
node=$1
tries=$2
i=0
while [ "$i" -lt "$tries" ]; do
    [ "$(docker node inspect -f '{{.Status.State}}' "$node")" = down ] && break
    sleep 0.5
    i=$((i + 1))
done
exit 0
