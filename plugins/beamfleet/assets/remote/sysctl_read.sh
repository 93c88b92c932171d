#!/bin/sh
# Read kernel settings (sysctl keys) and whether this host may change them, for
# beamfleet's facts. One line per key:
#   KEY VALUE rw   the setting exists and can be written here
#   KEY VALUE ro   it exists but /proc/sys is read-only (e.g. the host is a container)
#   KEY - absent   the kernel has no such setting (e.g. IPv6 disabled at boot)
#
# usage: sysctl_read.sh KEY...   (keys in dotted form: net.ipv4.neigh.default.gc_thresh1)
set -eu
[ $# -ge 1 ] || { echo "usage: $0 KEY..." >&2; exit 2; }
for key do
    case $key in
    *[!A-Za-z0-9_.-]* | .* | *..*)
        echo "$0: not a sysctl key: $key" >&2
        exit 2
        ;;
    esac
    path=/proc/sys/$(printf %s "$key" | tr . /)
    if [ ! -r "$path" ]; then
        echo "$key - absent"
        continue
    fi
    value=$(cat "$path")
    access=ro
    if [ -w "$path" ]; then
        access=rw
    fi
    echo "$key $value $access"
done
