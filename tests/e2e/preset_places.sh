#!/usr/bin/env bash
# Where the presets come from (docs/configs.md "Loading"): UVIT_CONFIG_DIR, then the first of the
# built-in places that holds any (an install's P/share/uvit/configs, the source tree's configs/,
# <exe dir>/configs, the configured prefix's). `info --presets` listed the names of every place,
# and `--config NAME` found a name only a later place held: a build tree's uvit listed (and took)
# an older install's presets beside its own. The list and a lookup now take the same places.
set -uo pipefail
UVIT=$1
source tests/e2e/data/lib.sh
unset UVIT_CONFIG_DIR  # ctest points it at the source tree's configs/
# A copy of this build's uvit in P/bin: P/share/uvit/configs is an install's place, and
# P/bin/configs the program folder's (after the source tree, which this build compiled in).
mkdir -p "$tmp/p/bin" "$tmp/p/bin/configs"
cp "$UVIT" "$tmp/p/bin/uvit"
U=$tmp/p/bin/uvit
cp configs/fmnist_uvit_tiny.json "$tmp/p/bin/configs/old_only.json"
src=$(ls configs/*.json | sed 's|.*/||; s|\.json$||' | sort)

# The source tree holds presets: a later place's names are neither listed nor found.
run "$U" info --presets
[ "$(cat "$tmp/out")" = "$src" ] && echo "ok: info --presets lists the source tree's presets alone" ||
  fail "info --presets with a later place's old_only: $(diff <(echo "$src") "$tmp/out" | grep '^[<>]' | tr '\n' ' ')"
expect_error "^uvit: error: config 'old_only' not found: not a file, a run folder or a preset (presets: celeba64_uvit_small, " \
  "$U" info --config old_only
run "$U" info --config fmnist_uvit_tiny
grep -q "^config  *fmnist_uvit_tiny" "$tmp/out" && echo "ok: the source tree's preset found" ||
  fail "info --config fmnist_uvit_tiny: $(cat "$tmp/out" "$tmp/err")"

# An install's presets come first: they are the set listed and taken, the source tree's not.
mkdir -p "$tmp/p/share/uvit/configs"
cp configs/fmnist_dit_tiny.json "$tmp/p/share/uvit/configs/"
cp configs/fmnist_uvit_tiny.json "$tmp/p/share/uvit/configs/installed_only.json"
run "$U" info --presets
[ "$(cat "$tmp/out" | tr '\n' ' ')" = "fmnist_dit_tiny installed_only " ] &&
  echo "ok: info --presets lists the install's presets alone" ||
  fail "info --presets of an install: $(cat "$tmp/out" | tr '\n' ' ')"
run "$U" info --presets --json
[ "$(cat "$tmp/out")" = '["fmnist_dit_tiny","installed_only"]' ] && echo "ok: --json alike" ||
  fail "info --presets --json of an install: $(cat "$tmp/out")"
expect_error "^uvit: error: config 'fmnist_uvit_tiny' not found: not a file, a run folder or a preset (presets: fmnist_dit_tiny, installed_only)$" \
  "$U" info --config fmnist_uvit_tiny

# UVIT_CONFIG_DIR adds the user's own to them, its names first.
mkdir "$tmp/mine"
cp configs/fmnist_uvit_tiny.json "$tmp/mine/my_preset.json"
cp configs/fmnist_uvit_tiny.json "$tmp/mine/fmnist_dit_tiny.json"
UVIT_CONFIG_DIR=$tmp/mine run "$U" info --presets
[ "$(cat "$tmp/out" | tr '\n' ' ')" = "fmnist_dit_tiny installed_only my_preset " ] &&
  echo "ok: UVIT_CONFIG_DIR's presets beside the install's" ||
  fail "info --presets with UVIT_CONFIG_DIR: $(cat "$tmp/out" | tr '\n' ' ')"
UVIT_CONFIG_DIR=$tmp/mine run "$U" info --config fmnist_dit_tiny
grep -q "^config  *fmnist_dit_tiny" "$tmp/out" && grep -q "^network  *uvit " "$tmp/out" &&
  echo "ok: UVIT_CONFIG_DIR's fmnist_dit_tiny first" || fail "UVIT_CONFIG_DIR's copy: $(cat "$tmp/out")"
exit $fails
