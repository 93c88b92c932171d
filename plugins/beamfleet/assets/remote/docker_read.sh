#!/bin/sh
# Read every Docker object of one kind as one JSON array, for beamfleet's facts.
#
# usage: docker_read.sh secrets|services|nodes
#        docker_read.sh overlay-networks
#        docker_read.sh service-tasks SERVICE
#        docker_read.sh join-tokens
#
# secrets, services, nodes: swarm-wide objects, which only a manager can list; elsewhere
#   (a worker, no swarm, no engine yet) this prints [] instead of failing, so one deploy
#   can plan the engine install and the swarm together.
# overlay-networks: the overlay networks this engine knows, on any host.
# service-tasks SERVICE: the tasks of SERVICE whose desired state is running; [] on a
#   host that is not a manager, or when there is no such service.
# join-tokens: the worker token, then the manager token, one per line, on a manager;
#   nothing elsewhere. The tokens only ever go to standard output.
set -eu

usage() {
    echo "usage: $0 secrets|services|nodes|overlay-networks|join-tokens|service-tasks SERVICE" >&2
    exit 2
}

# True on a swarm manager (the only place swarm-wide objects can be listed).
is_manager() {
    [ "$(docker info --format '{{.Swarm.ControlAvailable}}' 2>/dev/null)" = true ]
}

# inspect_ids IDS INSPECT-COMMAND...: inspect every ID of the list IDS in one call, or
# print [] when it is empty (`docker X inspect` of no ID is an error).
inspect_ids() {
    ids=$1
    shift
    if [ -n "$ids" ]; then
        # shellcheck disable=SC2086 # IDS is a whitespace-separated list: one argument each
        "$@" $ids
    else
        echo '[]'
    fi
}

[ $# -ge 1 ] || usage
case $1 in
secrets | services | nodes)
    [ $# -eq 1 ] || usage
    kind=${1%s}
    if is_manager; then
        # A failed listing reads as "none", as it did for the facts' inline commands.
        ids=$(docker "$kind" ls -q) || true
        inspect_ids "$ids" docker "$kind" inspect
    else
        echo '[]'
    fi
    ;;
overlay-networks)
    [ $# -eq 1 ] || usage
    ids=$(docker network ls -q --filter driver=overlay) || true
    inspect_ids "$ids" docker network inspect
    ;;
service-tasks)
    [ $# -eq 2 ] || usage
    service=$2
    if is_manager && docker service inspect "$service" >/dev/null 2>&1; then
        ids=$(docker service ps -q --filter desired-state=running "$service") || true
        inspect_ids "$ids" docker inspect
    else
        echo '[]'
    fi
    ;;
join-tokens)
    [ $# -eq 1 ] || usage
    if is_manager; then
        docker swarm join-token -q worker
        docker swarm join-token -q manager
    fi
    ;;
*)
    usage
    ;;
esac
