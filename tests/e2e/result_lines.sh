#!/usr/bin/env bash
# A result on stdout is one line, also when it names a path that holds a line break (typed as
# $'r\nun'): the name's control characters are written as escapes, as in errors (README.md "On the
# command line"; docs/ux_audit.md, round 14). An ordinary name prints exactly as before.
set -uo pipefail
UVIT=$1 PYTHON=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
T=(--threads 1)
nl=$'\n'
# same_but_name ODD_OUT PLAIN_OUT ODD PLAIN WHAT: ODD_OUT is PLAIN_OUT with the name PLAIN written
# as ODD with its line break escaped, line for line.
same_but_name() {
  local want=${2//"$4"/${3//$nl/\\n}}
  [ "$1" = "$want" ] && echo "ok: $5" || fail "$5: got [$1], want [$want]"
}

# train: its last line names the run folder (twice).
run "$UVIT" "${T[@]}" train --config fmnist_uvit_tiny --out "$tmp/run" --steps 1 --batch 2 \
  --no-grid -q
plain=$(cat "$tmp/out")
[ "$plain" = "run $tmp/run at step 1: weights $tmp/run/nnet_ema.safetensors" ] &&
  echo "ok: train's line for an ordinary name" || fail "train's line: [$plain]"
odd=$tmp/r${nl}un
run "$UVIT" "${T[@]}" train --config fmnist_uvit_tiny --out "$odd" --steps 1 --batch 2 --no-grid -q
same_but_name "$(cat "$tmp/out")" "$plain" "$odd" "$tmp/run" "train --out \$'r\\nun': one line"

# sample: its results are files; stdout stays empty (no line to break) and the file is written.
run "$UVIT" "${T[@]}" sample --config fmnist_uvit_tiny --weights "$odd/nnet_ema.safetensors" \
  --class 1 --n 1 --steps 2 --out "$tmp/s${nl}a.png" -q
[ ! -s "$tmp/out" ] && [ -s "$tmp/s${nl}a.png" ] && echo "ok: sample --out \$'s\\na.png': no stdout" ||
  fail "sample --out with a line break: stdout [$(cat "$tmp/out")]"

# convert: "wrote OUT: N tensors, M values".
run "$UVIT" "${T[@]}" convert "$tmp/run/nnet_ema.safetensors" "$tmp/cv.safetensors"
plain=$(cat "$tmp/out")
[[ $plain =~ ^wrote\ $tmp/cv\.safetensors:\ [0-9]+\ tensors,\ [0-9]+\ values$ ]] &&
  echo "ok: convert's line for an ordinary name" || fail "convert's line: [$plain]"
run "$UVIT" "${T[@]}" convert "$odd/nnet_ema.safetensors" "$tmp/c${nl}v.safetensors"
same_but_name "$(cat "$tmp/out")" "$plain" "$tmp/c${nl}v" "$tmp/cv" "convert to \$'c\\nv': one line"

# info FILE: "file PATH", the preset line's command naming PATH; an npy folder's line names it.
run "$UVIT" info "$tmp/cv.safetensors"
plain=$(cat "$tmp/out")
grep -q "^file          $tmp/cv.safetensors$" "$tmp/out" &&
  grep -q "^preset        fmnist_uvit_tiny .* --weights $tmp/cv.safetensors$" "$tmp/out" &&
  echo "ok: info's lines for an ordinary name" || fail "info's lines: [$plain]"
run "$UVIT" info "$tmp/c${nl}v.safetensors"
same_but_name "$(cat "$tmp/out")" "$plain" "$tmp/c${nl}v" "$tmp/cv" "info \$'c\\nv.safetensors'"
# The preset line names a preset, whose name is its file's (here UVIT_CONFIG_DIR's $'a\ntiny.json',
# a copy of fmnist_uvit_tiny listed first): as `info --presets` lists it, escaped (it was three
# lines: "preset        a" / "tiny (every ...): uvit sample --config a" / "tiny --weights ...").
mkdir -p "$tmp/cd" && cp configs/fmnist_uvit_tiny.json "$tmp/cd/a${nl}tiny.json"
UVIT_CONFIG_DIR=$tmp/cd run "$UVIT" info "$tmp/cv.safetensors"
same_but_name "$(cat "$tmp/out")" "$plain" "a${nl}tiny" "fmnist_uvit_tiny" "info's preset \$'a\\ntiny'"
mkdir -p "$tmp/np" "$tmp/n${nl}p"
"$PYTHON" -c "import numpy as n, sys; [n.save(d + '/a.npy', n.zeros((2, 2, 3), n.uint8)) for d in sys.argv[1:]]" \
  "$tmp/np" "$tmp/n${nl}p" || fail "numpy"
run "$UVIT" info "$tmp/np"
plain=$(cat "$tmp/out")
run "$UVIT" info "$tmp/n${nl}p"
same_but_name "$(cat "$tmp/out")" "$plain" "$tmp/n${nl}p" "$tmp/np" "info of an npy folder \$'n\\np'"

# info --config FILE.json: "config NAME" (the file's stem).
cp configs/fmnist_uvit_tiny.json "$tmp/mine.json"
cp configs/fmnist_uvit_tiny.json "$tmp/mi${nl}ne.json"
run "$UVIT" info --config "$tmp/mine.json"
plain=$(cat "$tmp/out")
grep -q "^config        mine$" "$tmp/out" && echo "ok: info --config's name" ||
  fail "info --config: [$(head -1 "$tmp/out")]"
run "$UVIT" info --config "$tmp/mi${nl}ne.json"
same_but_name "$(cat "$tmp/out")" "$plain" "mi${nl}ne" "mine" "info --config \$'mi\\nne.json'"

exit $fails
