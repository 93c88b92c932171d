#!/bin/sh
# Create a swarm secret from random bytes generated here, on the manager. The value lives
# only in this shell's variable and reaches `docker secret create -` on its standard input
# (printf is a shell builtin), so it is in no process's arguments, no output and no file.
#
# usage: generate_secret.sh SECRET BYTES HASH_LABEL SALT_LABEL [KEY=VALUE...]
#   SECRET      the secret's name
#   BYTES       how many random bytes; the value is their 2*BYTES hex digits
#   HASH_LABEL  label set to salted-sha256:<first 32 hex digits of the SHA-256 of the
#               salt followed by the value>: never the plain hash of the value
#   SALT_LABEL  label set to the salt: 16 more random bytes, as hex digits
#   KEY=VALUE   more labels
set -eu
[ $# -ge 4 ] || {
    echo "usage: $0 SECRET BYTES HASH_LABEL SALT_LABEL [KEY=VALUE...]" >&2
    exit 2
}
secret=$1
bytes=$2
hash_label=$3
salt_label=$4
shift 4
# The remaining arguments become `--label KEY=VALUE` pairs, in their order.
for label do
    shift
    set -- "$@" --label "$label"
done
# hex_random N: N random bytes as 2*N hex digits
hex_random() {
    head -c "$1" /dev/urandom | od -An -v -tx1 | tr -d ' \n'
}
c=$(hex_random "$bytes")
[ "${#c}" -eq $((bytes * 2)) ]
s=$(hex_random 16)
[ "${#s}" -eq 32 ]
h=salted-sha256:$(printf %s%s "$s" "$c" | sha256sum | cut -c1-32)
printf %s "$c" |
    docker secret create "$@" --label "$hash_label=$h" --label "$salt_label=$s" "$secret" - >/dev/null
unset c
