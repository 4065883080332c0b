#!/usr/bin/env bash
# Errors each rank finds in its own command line before any work (docs/distributed.md "Errors
# before the work"): the ranks decide together, so that a rank alone with a bad option is named
# in one line from rank 0 (before, it exited without a word: only mpirun's own lines said that a
# process failed), and an error every rank meets is still said once.
set -uo pipefail
source tests/mpi/lib.bash
"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json"
# ranks R1ARGS: $tmp/node.sh runs uvit in $tmp/nR (a node-local folder), rank 1 with R1ARGS (words)
# after the command's own, rank 0 with R0ARGS (words, from the environment).
mkdir -p "$tmp/n0" "$tmp/n1"
ranks() {
  cat >"$tmp/node.sh" <<EOS
#!/bin/sh
r=\${OMPI_COMM_WORLD_RANK:-\${PMI_RANK:-0}}
cd "$tmp/n\$r" || exit 9
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

# The command line CLI11 refuses on one rank alone (an unknown option, a bad value), in each
# command whose ranks decide together: named in rank 0's line, every rank exits 1. Before, that rank
# exited without a word before MPI started and mpirun ended the job with its own lines only.
E=(eval "${S[@]}" --ref "$tmp/ref.npz" --out "$tmp/run/e.npz")
ranks --bogus
refused "rank 1: --bogus: not an option of train (uvit help train)" "${T[@]}"
refused "rank 1: --bogus: not an option of demo (uvit help demo)" demo -q --steps 1 --out "$tmp/run"
refused "rank 1: --bogus: not an option of sample (uvit help sample)" sample "${S[@]}" --out "$tmp/run/x.png"
refused "rank 1: --bogus: not an option of eval (uvit help eval)" "${E[@]}"
refused "rank 1: --bogus: not an option of fid-features (uvit help fid-features)" \
  fid-features "$tmp/tiny.json" --out "$tmp/run/f.npy"
ranks --steps abc
refused "rank 1: --steps must be a number, got 'abc' (uvit help train)" "${T[@]}"
ranks --resume=  # refused before CLI11 parses (it would take '' for "latest")
refused "rank 1: --resume must name a file or folder, got '' .*" "${T[@]}"
# Rank 0 alone, and every rank: the line alone.
R0ARGS=--bogus ranks
refused "--bogus: not an option of train (uvit help train)" "${T[@]}"
R0ARGS=--bogus ranks --bogus
refused "--bogus: not an option of train (uvit help train)" "${T[@]}"
# A command that makes no communicator runs on every rank as in one process: each rank says its
# own parse error (before, rank 1 exited without a word), and no rank waits for another.
ranks --bogus
failing timeout -k 10 60 "$MPIRUN" -np 2 "$tmp/node.sh" info >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ $rc -eq 1 ] && [ "$(grep -c '^uvit: error:' "$tmp/err")" -eq 2 ] &&
  grep -q '^uvit: error: give --config C' "$tmp/err" &&
  grep -qx 'uvit: error: --bogus: not an option of info (uvit help info)' "$tmp/err"; then
  echo "ok: each rank's own line (info)"
else
  fail "info, --bogus on rank 1: rc=$rc"; cat "$tmp/err"
fi

# Help on some ranks only: the helping rank joins the others' first exchange (before, it printed
# the help and exited 0 while the others waited in their first collective until mpirun's end).
HELP="given on some ranks only (help is printed when every rank asks for it; give every rank \
the same command line)"
ranks --help
LIMIT=60 refused "rank 1: --help $HELP" "${T[@]}"
R0ARGS=--help ranks
LIMIT=60 refused "--help $HELP" "${T[@]}"
# On every rank: the help once, from rank 0, and status 0.
R0ARGS=--help ranks --help
timeout -k 10 60 "$MPIRUN" -np 2 "$tmp/node.sh" "${T[@]}" >"$tmp/out" 2>"$tmp/err" &&
  [ "$(grep -c '^Usage: uvit train' "$tmp/out")" -eq 1 ] && [ ! -s "$tmp/err" ] ||
  fail "--help on every rank: $(grep -c '^Usage:' "$tmp/out") usage lines; $(cat "$tmp/err")"
# own CMD...: $tmp/own.sh runs uvit with the command line's words on rank 0, CMD on rank 1.
own() {
  printf '#!/bin/sh\n[ "${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-0}}" = 1 ] && exec "%s" %s\nexec "%s" "$@"\n' \
    "$UVIT" "$*" "$UVIT" >"$tmp/own.sh"
  chmod +x "$tmp/own.sh"
}
own help train
LIMIT=60 one_error_line "rank 1: uvit help $HELP\$" "$tmp/own.sh" "${T[@]}"
timeout -k 10 60 "$MPIRUN" -np 2 "$tmp/own.sh" help train >"$tmp/out" 2>"$tmp/err" &&
  [ "$(grep -c '^Usage: uvit train' "$tmp/out")" -eq 1 ] ||
  fail "uvit help train on every rank: $(grep -c '^Usage:' "$tmp/out") usage lines; $(cat "$tmp/err")"
# A command word not recognised (the ranks' command unknown) joins the first exchange too: on rank 1
# alone, named (before, it exited without a word); on every rank, once.
own trian
LIMIT=60 one_error_line "rank 1: unknown command 'trian' (commands: .*)\$" "$tmp/own.sh" "${T[@]}"
LIMIT=60 one_error_line "unknown command 'trian' (commands: .*)\$" "$tmp/own.sh" trian
own help trian
LIMIT=60 one_error_line "rank 1: help: unknown command 'trian' (commands: .*)\$" "$tmp/own.sh" \
  "${T[@]}"

# train decides its command's checks and the training function's in one exchange: rank 1's bad
# --set (the command's) and rank 0's sampler (the training function's) are both named. Before, the
# first of two exchanges stopped at rank 1's.
R0ARGS="--set sample.algorithm=nosuch" ranks --set optimizer.lr=abc
refused "sample.algorithm 'nosuch' is not an official sampler .* (rank 1 failed too, with \
another error)" "${T[@]}"

# Out of memory in the checks (the network's buffers, under UVIT_TEST_MEM_LIMIT): the line keeps
# main()'s hint naming the size options, on every rank and on rank 1 alone (before, under mpirun,
# the bare "out of memory: ...").
"$UVIT" train --config "$tmp/tiny.json" --out "$tmp/w" --steps 1 --no-grid -q >/dev/null ||
  fail "training the tiny weights"
M=(sample --config "$tmp/tiny.json" --weights "$tmp/w/nnet_ema.safetensors" --n 4 --batch 4
  --classes all --out "$tmp/run/x.png" -q)
HINT="; with --batch 4 --n 4: give smaller values"
ranks
UVIT_TEST_MEM_LIMIT=100000 refused "out of memory: the buffers need .*$HINT" "${M[@]}"
printf '#!/bin/sh\n[ "${OMPI_COMM_WORLD_RANK:-0}" = 1 ] && export UVIT_TEST_MEM_LIMIT=100000\nexec "%s" "$@"\n' \
  "$UVIT" >"$tmp/mem.sh" && chmod +x "$tmp/mem.sh"
one_error_line "rank 1: out of memory: the buffers need .*$HINT\$" "$tmp/mem.sh" "${M[@]}"

# sample's and eval's later checks (the outputs, the files they read), the same on every rank: one
# line (before, one a rank, "rank R: ..." each, and MPI_Abort).
ranks
refused "--npy /etc/passwd/s.npy: /etc/passwd is a file, not a folder" sample "${S[@]}" --npy /etc/passwd/s.npy
S=("${S[@]}" --classes all)
refused "$tmp/none.txt: file not found" sample "${S[@]}" --out "$tmp/run/x.png" --prompts "$tmp/none.txt"
refused "$tmp/none.npy: cannot open: No such file or directory" \
  sample "${S[@]}" --out "$tmp/run/x.png" --noise "$tmp/none.npy"
A=(--config dit_b_8 --weights "$tmp/w.safetensors" --n 2 --autoencoder "$tmp/none.pth")
refused "$tmp/none.pth: cannot open: No such file or directory" sample "${A[@]}" --class 1 --out "$tmp/run/x.png"
refused "$tmp/none.pth: cannot open: No such file or directory" \
  eval "${A[@]}" --ref "$tmp/ref.npz" --out "$tmp/run/e.npz"
refused "$tmp/ref.npz: cannot open: No such file or directory" "${E[@]}" --n 2
# Rank 1 alone: its node lacks the prompts file (a relative path), or holds a file where rank 0's
# holds the output's folder.
echo "a prompt" >"$tmp/n0/p.txt"
mkdir -p "$tmp/n0/o" && : >"$tmp/n1/o"
refused "rank 1: p.txt: file not found" sample "${S[@]}" --out "$tmp/run/x.png" --prompts p.txt
refused "rank 1: --npy o/s.npy: o is a file, not a folder" sample "${S[@]}" --npy o/s.npy
exit $fails
