#!/usr/bin/env bash
# Build the operator image from the repository's Dockerfile without Docker, as an OCI archive.
#
#   scripts/build-image.sh      # last line printed: "<image reference> <archive path>"
#
# Why: no Docker engine and no container registry can be reached here, so the Dockerfile's
# public base (python:3.11-slim) cannot be pulled. A minimal Debian bookworm root filesystem with
# Python 3.11 is made with debootstrap from the Debian mirror and imported into a private
# buildah store; buildah then builds the Dockerfile on it. The Dockerfile is used as it is: when
# it declares `ARG BASE_IMAGE` the local base is passed as that build argument, otherwise the
# local base is tagged, in the private store only, with the name of the Dockerfile's FROM image.
# The pip steps of the build reach PyPI through the host's network and CA bundle (mounted for
# RUN steps only; nothing of the host ends up in the image).
#
# Cached by content under $GREENPLACE_CACHE (default ~/.cache/greenplace): images/base-<hash>
# (the base, by its recipe) and images/greenplace-<hash>.oci.tar (by the recipe, the base, the
# Dockerfile and every file it copies). A warm run only hashes files. Needs root, buildah and
# debootstrap (scripts/ensure-realnode.sh installs them).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${GREENPLACE_CACHE:-$HOME/.cache/greenplace}
IMAGES=$CACHE/images
STORE=$CACHE/buildah
SUITE=bookworm
MIRROR=${GREENPLACE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_PACKAGES=python3,python3-venv,python-is-python3
REPOSITORY=localhost/greenplace/greenplace
NICE=(nice -n 10)
export PATH="$PATH:/usr/sbin:/sbin"

for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || { echo "build-image: $tool missing:" \
    "run scripts/ensure-realnode.sh" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "build-image: needs root (debootstrap, buildah)" >&2; exit 1; }

mkdir -p "$IMAGES"
exec 9>"$IMAGES/.lock"
flock 9  # one build at a time; a second caller then finds the archive made by the first

buildah_() { buildah --root "$STORE/root" --runroot "$STORE/run" --storage-driver overlay "$@"; }
sha() { sha256sum | cut -c1-16; }

recipe=$(sha256sum "$0" | cut -d' ' -f1)
base_key=$(printf '%s %s %s %s' "$recipe" "$SUITE" "$BASE_PACKAGES" "$(uname -m)" | sha)
base="localhost/greenplace/base:$base_key"
image_key=$(
  cd "$ROOT"
  {
    echo "$recipe $base_key"
    find Dockerfile pyproject.toml README.md operator devcluster -type f \
      ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum
  } | sha
)
reference="$REPOSITORY:$image_key"
archive="$IMAGES/greenplace-$image_key.oci.tar"
if [ -s "$archive" ]; then
  echo "$reference $archive"
  exit 0
fi

if ! buildah_ inspect --type image "$base" >/dev/null 2>&1; then
  started=$(date +%s)
  rootfs=$(mktemp -d "$IMAGES/rootfs.XXXXXX")
  trap 'rm -rf "$rootfs"' EXIT
  echo "build-image: debootstrap $SUITE ($BASE_PACKAGES) from $MIRROR ..." >&2
  "${NICE[@]}" debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs" \
    "$MIRROR" >"$IMAGES/debootstrap.log" 2>&1 \
    || { tail -n 20 "$IMAGES/debootstrap.log" >&2; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* \
    "$rootfs"/var/log/*.log
  container=$(buildah_ from scratch)
  mount=$(buildah_ mount "$container")
  tar -C "$rootfs" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -cf - . \
    | tar -C "$mount" -xpf -
  buildah_ umount "$container" >/dev/null
  buildah_ config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd python3 "$container"
  buildah_ commit -q --rm "$container" "$base" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  echo "build-image: base $base made in $(( $(date +%s) - started ))s" >&2
fi

started=$(date +%s)
build_args=()
if grep -qE '^ARG[[:space:]]+BASE_IMAGE\b' "$ROOT/Dockerfile"; then
  build_args+=(--build-arg "BASE_IMAGE=$base")
else
  # FROM images that are not earlier stages: stand the local base in for each, privately.
  stages=" "
  while read -r keyword from _as stage; do
    [ "${keyword^^}" = FROM ] || continue
    case "$stages" in *" $from "*) ;; *) buildah_ tag "$base" "$from" ;; esac
    [ -n "${stage:-}" ] && stages="$stages$stage "
  done < <(grep -iE '^FROM[[:space:]]' "$ROOT/Dockerfile")
fi
mounts=()
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  piprc=$(mktemp "$IMAGES/pip.conf.XXXXXX")
  trap 'rm -f "$piprc"' EXIT
  { echo "[global]"; echo "cert = /etc/ssl/certs/ca-certificates.crt"
    [ -n "${PIP_INDEX_URL:-}" ] && echo "index-url = $PIP_INDEX_URL"; } >"$piprc"
  mounts+=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro
           -v "$piprc:/etc/pip.conf:ro")
fi
echo "build-image: building $reference from $ROOT/Dockerfile ..." >&2
"${NICE[@]}" buildah --root "$STORE/root" --runroot "$STORE/run" --storage-driver overlay \
  bud --pull=never --network=host --layers=false --quiet "${build_args[@]}" "${mounts[@]}" \
  -f "$ROOT/Dockerfile" -t "$reference" "$ROOT" >"$IMAGES/build.log" 2>&1 \
  || { tail -n 30 "$IMAGES/build.log" >&2; exit 1; }
rm -f "$archive.partial"
buildah_ push -q "$reference" "oci-archive:$archive.partial:$reference" >/dev/null
mv "$archive.partial" "$archive"
buildah_ rmi "$reference" >/dev/null 2>&1 || true
# Keep the three newest operator archives.
ls -1t "$IMAGES"/greenplace-*.oci.tar 2>/dev/null | tail -n +4 | xargs -r rm -f
echo "build-image: $reference in $(( $(date +%s) - started ))s" >&2
echo "$reference $archive"
