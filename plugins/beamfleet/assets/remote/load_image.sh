#!/bin/sh
# Load an image archive that beamfleet uploaded, then remove the archive whether the load
# worked or not; exit with the load's status.
#
# usage: load_image.sh ARCHIVE
set -eu
[ $# -eq 1 ] || { echo "usage: $0 ARCHIVE" >&2; exit 2; }
archive=$1
rc=0
docker load -q -i "$archive" >/dev/null || rc=$?
rm -f "$archive"
exit "$rc"
