#!/usr/bin/env bash
# Downloads (here, on the Debian 12 dev machine) the .deb files that a bare CUDA image lacks for a
# uvit build, into .debs/ (git-ignored). The device run carries that folder and
# scripts/gpu-check.sh unpacks it with `dpkg -x` into a private prefix, never into /.
# Usage: scripts/fetch_gpu_debs.sh [DEST]   (default: <repo>/.debs)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$repo/.debs}

# Build-time headers/libs (-dev) and the runtime libraries they need that a base Ubuntu lacks.
# gpu-check.sh only unpacks the runtime-only ones (RUNTIME_IF_MISSING there) when the image does
# not already provide their soname, so a newer system libgomp/libgfortran is never shadowed.
pkgs=(
  libdnnl-dev libdnnl2 ocl-icd-libopencl1 # oneDNN 2.6 (libdnnl.so.2 links libOpenCL.so.1)
  libopenblas-dev libopenblas0 libopenblas0-pthread libopenblas-pthread-dev # LAPACK for FID
  libgfortran5 libquadmath0 libgomp1 # OpenBLAS's Fortran runtime; OpenMP runtime fallback
  nlohmann-json3-dev libcli11-dev libgtest-dev
  zlib1g-dev zlib1g
  libssl3 # libcrypto.so.3 (uvit links OpenSSL's crypto); unpacked only where the image lacks it
)

mkdir -p "$dest"
rm -f "$dest"/*.deb
# apt-get download writes into the current directory; it fails as a whole if one name is unknown.
(cd "$dest" && apt-get download -q "${pkgs[@]}" 2>&1 | grep -v "unsandboxed as root" || true)
# (the pipe hides apt's harmless root warning; the count below catches a failed download)
# Plain names (PACKAGE.deb): no '~', '+' or '%3a' in what travels to the device.
for f in "$dest"/*_*.deb; do
  mv -f "$f" "$dest/$(dpkg-deb -f "$f" Package).deb"
done
n=$(ls "$dest"/*.deb | wc -l)
if [ "$n" -ne "${#pkgs[@]}" ]; then
  echo "fetch_gpu_debs.sh: expected ${#pkgs[@]} .deb files in $dest, found $n" >&2
  exit 1
fi
du -ch "$dest"/*.deb | tail -1 | sed "s|total|total in $dest ($n files)|"
