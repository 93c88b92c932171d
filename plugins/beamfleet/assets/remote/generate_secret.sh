#!/bin/sh
# Create a swarm secret from random bytes generated here, on the manager. The value lives
# only in this shell's variable and reaches `docker secret create -` on its standard input
# (printf is a shell builtin), so it is in no process's arguments, no output and no file.
#
# usage: generate_secret.sh SECRET BYTES HASH_LABEL [KEY=VALUE...]
#   SECRET      the secret's name
#   BYTES       how many random bytes; the value is their 2*BYTES hex digits
#   HASH_LABEL  label set to sha256:<first 16 hex digits of the value's SHA-256>
#   KEY=VALUE   more labels
set -eu
[ $# -ge 3 ] || { echo "usage: $0 SECRET BYTES HASH_LABEL [KEY=VALUE...]" >&2; exit 2; }
secret=$1
bytes=$2
hash_label=$3
shift 3
# The remaining arguments become `--label KEY=VALUE` pairs, in their order.
for label do
    shift
    set -- "$@" --label "$label"
done
c=$(head -c "$bytes" /dev/urandom | od -An -v -tx1 | tr -d ' \n')
[ "${#c}" -eq $((bytes * 2)) ]
h=sha256:$(printf %s "$c" | sha256sum | cut -c1-16)
printf %s "$c" | docker secret create "$@" --label "$hash_label=$h" "$secret" - >/dev/null
unset c
