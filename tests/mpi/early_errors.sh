#!/usr/bin/env bash
# Errors each rank finds in its own command line before any work (docs/distributed.md "Errors
# before the work"): the ranks decide together, so that a rank alone with a bad option is named
# in one line from rank 0 (before, it exited without a word: only mpirun's own lines said that a
# process failed), and an error every rank meets is still said once.
set -uo pipefail
source tests/mpi/lib.bash
"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json"
# ranks R1ARGS: $tmp/node.sh runs uvit, rank 1 with R1ARGS (words) after the command's own, rank 0
# with R0ARGS (words, from the environment).
ranks() {
  cat >"$tmp/node.sh" <<EOS
#!/bin/sh
r=\${OMPI_COMM_WORLD_RANK:-\${PMI_RANK:-0}}
[ "\$r" = 1 ] && exec "$UVIT" "\$@" $*
exec "$UVIT" "\$@" ${R0ARGS:-}
EOS
  chmod +x "$tmp/node.sh"
}
# refused LINE ARGS...: on 2 ranks, one error line, LINE (a grep pattern), and nothing made.
refused() {
  one_error_line "$1\$" "$tmp/node.sh" "${@:2}"
  [ ! -e "$tmp/run" ] || fail "the refused job made $tmp/run: $(ls "$tmp/run")"
}
T=(train --no-grid -q --steps 2 --config "$tmp/tiny.json" --out "$tmp/run")
LR="override 'optimizer.lr=abc': optimizer.lr expects a number, got \"abc\""

# Rank 1 alone with a bad --set: applied in uvit train's own checks, then at the top of the
# training function (the sample algorithm), and in uvit demo's.
ranks --set optimizer.lr=abc
refused "rank 1: $LR" "${T[@]}"
ranks --set sample.algorithm=nosuch
refused "rank 1: sample.algorithm 'nosuch' is not an official sampler .*" "${T[@]}"
ranks --set optimizer.lr=abc
refused "rank 1: $LR" demo -q --steps 1 --out "$tmp/run"
# Every rank with it (the common case): once, without a rank.
ranks
refused "$LR" "${T[@]}" --set optimizer.lr=abc
# Both ranks fail, each otherwise: rank 0's error (rank 0 alone is not named), and rank 1 named.
R0ARGS="--set optimizer.lr" ranks --set optimizer.lr=abc
refused "override 'optimizer.lr': expected section.key=value (rank 1 failed too, with \
another error)" "${T[@]}"
# uvit sample and eval: their --set on every rank, once (before, every rank printed it, "rank R: "
# each); on rank 1 alone, named.
: >"$tmp/w.safetensors"  # not read: the settings are refused first
S=(--weights "$tmp/w.safetensors" --config "$tmp/tiny.json")
STEPS="override 'sample.sample_steps=abc': sample.sample_steps expects an integer, got \"abc\""
ranks
refused "$STEPS" sample "${S[@]}" --out "$tmp/run/x.png" --set sample.sample_steps=abc
refused "$STEPS" eval "${S[@]}" --ref "$tmp/ref.npz" --out "$tmp/run/e.npz" \
  --set sample.sample_steps=abc
ranks --set sample.sample_steps=abc
refused "rank 1: $STEPS" sample "${S[@]}" --out "$tmp/run/x.png"
exit $fails
