#!/usr/bin/env bash
# The run path of the binaries a user runs (uvit, libuvit.so) names no empty or relative folder:
# the loader reads such an entry as the current folder, so a library file in the folder uvit is
# run from would be loaded instead of the system's (cmake/c_api.cmake says where it came from).
set -uo pipefail
UVIT=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
source tests/e2e/data/lib.sh
for f in "$UVIT" "$(dirname "$UVIT")"/libuvit.so.*.*.*; do
  [ -f "$f" ] || continue
  rp=$(readelf -d "$f" | sed -n 's/.*(R\(UN\)\{0,1\}PATH).*\[\(.*\)\]/\2/p')
  bad=$(tr ':' '\n' <<<"$rp:" | head -n -1 | grep -v '^/' | sed 's/^$/(empty)/' | tr '\n' ' ')
  # `$rp:` ends with the one ':' added here, so an entry the file ends with stays an entry.
  if [ -n "$bad" ]; then
    fail "$(basename "$f")'s run path [$rp] has entries that are not absolute folders: $bad"
  else
    echo "ok: $(basename "$f")'s run path [$rp] names absolute folders only"
  fi
done
# The behaviour: a file named as one of uvit's libraries in the current folder is not loaded.
mkdir -p "$tmp/cwd"
echo "not a library" > "$tmp/cwd/libz.so.1"
if (cd "$tmp/cwd" && "$UVIT" --version > "$tmp/out.txt" 2>&1); then
  echo "ok: uvit run from a folder holding a libz.so.1 ignores it"
else
  fail "uvit run from a folder holding a libz.so.1 loaded it: $(head -2 "$tmp/out.txt")"
fi
exit $fails
