#!/usr/bin/env bash
# Regressions from the fifth new-user audit (docs/ux_audit.md, "round 5"): each check failed
# before its fix.
set -uo pipefail
UVIT=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

U=$tmp/run
run "$UVIT" train --config fmnist_uvit_tiny --out "$U" --steps 1 --batch 2 --no-grid -q
W=$U/nnet_ema.safetensors

# --- round 4's leftovers --------------------------------------------------------------------------
# An empty value of an optional option meant "not given": `sample --npy ''` wrote no array and
# said nothing, `train --data ''` trained on the preset's data, `--sampler ''` ran the preset's.
# Every option of every command that takes text is tried with '' (numbers have their own check).
cmds=$("$UVIT" --help | sed -n '/^Subcommands:/,/^$/p' | sed -n 's/^  \([a-z][a-z-]*\) .*/\1/p')
tried=0 before=$fails
for c in $cmds "autoencoder encode" "autoencoder decode"; do
  [ "$c" = autoencoder ] && continue
  # shellcheck disable=SC2086
  for o in $("$UVIT" help $c | sed -n '/^Options:/,/^uvit help/p' |
    grep -E '^  (-[a-z],)?--[a-z0-9-]+(,--[a-z0-9-]+)* TEXT' | grep -oE -- '--[a-z0-9-]+' | sort -u); do
    case $o in --prompt | --negative-prompt) continue ;; esac  # "" is a prompt
    # In $tmp, and bounded: an option that took '' as "not given" could start a whole demo.
    # shellcheck disable=SC2086
    (cd "$tmp" && timeout 20 "$UVIT" $c "$o" '' >"$tmp/out" 2>"$tmp/err")
    rc=$? tried=$((tried + 1))
    # --device and the other choices: CLI11's "not in {cpu,cuda}" (their own list). An alias
    # is named by the option's first name (--autoencoder-config: --config).
    if [ $rc != 1 ] || [ "$(wc -l <"$tmp/err")" != 1 ] ||
      ! grep -qE -- "^uvit: error: --[a-z0-9-]+(:  not in \{| must name a file or folder, got ''| must not be empty, got ''| must be a number, got '')" "$tmp/err"; then
      fail "$c $o '': exit $rc: $(cat "$tmp/err")"
    fi
  done
done
[ $tried -gt 100 ] || fail "only $tried options tried"
[ $fails = "$before" ] && echo "ok: '' refused by all $tried text options of every command"
expect_error "^uvit: error: --npy must name a file or folder, got '' (uvit help sample)$" \
  "$UVIT" sample --config fmnist_uvit_tiny --weights "$W" --class 1 --n 1 --steps 2 --out "$tmp/g.png" --npy ''
[ ! -e "$tmp/g.png" ] || fail "a refused --npy '' still sampled"
expect_error "^uvit: error: --data must name a file or folder, got '' (uvit help train)$" \
  "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/d" --steps 1 --data ''
expect_error "^uvit: error: --sampler must not be empty, got '' (leave the option out for its default)" \
  "$UVIT" sample --config fmnist_uvit_tiny --weights "$W" --class 1 --n 1 --out "$tmp/g.png" --sampler ''

# `uvit info W.safetensors` (or .pth, .npy, .npz) said only "not a PNG file (bad signature)".
run "$UVIT" info "$W"
grep -q "^weights       93 tensors, 1496346 values (93 F32)$" "$tmp/out" &&
  grep -q "^preset        fmnist_uvit_tiny (every tensor's name and shape): uvit sample --config fmnist_uvit_tiny --weights $W$" "$tmp/out" ||
  fail "info weights: $(cat "$tmp/out")"
run "$UVIT" info --json "$W"
grep -qx '{"dtypes":{"F32":93},"file":"nnet_ema.safetensors","kind":"weights","preset":"fmnist_uvit_tiny","tensors":93,"values":1496346}' "$tmp/out" ||
  fail "info --json weights: $(cat "$tmp/out")"
"$PY" - "$tmp" <<'PYEOF' || fail "writing .pth/.npy/.npz"
import sys, numpy as np, torch
d = sys.argv[1]
torch.save({"a": torch.zeros(2, 3)}, d + "/w.pth")
np.save(d + "/x.npy", np.zeros((4, 1, 28, 28), np.float32))
np.savez(d + "/ref.npz", mu=np.zeros(3), sigma=np.eye(3))
PYEOF
run "$UVIT" info "$tmp/w.pth"
grep -q "^preset        none of uvit info --presets has exactly these tensors$" "$tmp/out" ||
  fail "info .pth: $(cat "$tmp/out")"
run "$UVIT" info "$tmp/x.npy"
grep -qx "array         F32 \[4,1,28,28\]" "$tmp/out" || fail "info .npy: $(cat "$tmp/out")"
run "$UVIT" info "$tmp/ref.npz"
grep -qx "arrays        mu, sigma" "$tmp/out" || fail "info .npz: $(cat "$tmp/out")"
expect_error "^uvit: error: $U: a training run, not a PNG file; uvit info --config RUN describes its network$" "$UVIT" info "$U"
echo text >"$tmp/t.txt"
expect_error "^uvit: error: $tmp/t.txt: not a PNG file; uvit info takes a PNG (its generation parameters), weights" \
  "$UVIT" info "$tmp/t.txt"
head -c 100 "$W" >"$tmp/cut.safetensors"
expect_error "^uvit: error: $tmp/cut.safetensors: truncated" "$UVIT" info "$tmp/cut.safetensors"

# --- audit round 5 --------------------------------------------------------------------------------
# An absurd size said "out of memory", naming nothing (or "could not allocate N bytes").
# (Since the samples' host memory is in the plan, docs/memory.md "Host memory", it names the bytes.)
expect_error "^uvit: error: out of memory: the buffers need [0-9.]* GiB, this machine has [0-9.]* GiB ([^)]*); with --n 100000000: give smaller values$" \
  "$UVIT" sample --config fmnist_uvit_tiny --weights "$W" --class 1 --n 100000000 --steps 2 --npy "$tmp/big.npy"
# (Since the memory check, docs/memory.md, a size above the machine's memory names both sizes: the
# whole need, checked before the parameters are initialised.)
expect_error "^uvit: error: out of memory: the buffers need [0-9.]* GiB ([0-9.]* MiB of them [^)]*), this machine has [0-9.]* GiB ([^)]*); with --batch 100000000: give smaller values$" \
  "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/big" --steps 1 --batch 100000000
[ ! -e "$tmp/big" ] || fail "train out of memory left $tmp/big"

# docs/distributed.md's train.overlap / train.zero=1 in a single process changed nothing, silently.
run "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/ov" --steps 1 --batch 2 --no-grid --set train.overlap=true
grep -qx "note: train.overlap changes nothing in a single process (it acts on the exchange between ranks, docs/distributed.md); the run keeps it for an mpirun --resume" "$tmp/err" &&
  echo "ok: train.overlap in one process: a note" || fail "train.overlap in one process: $(cat "$tmp/err")"

# Under mpirun: `-np 3 train --batch 4` printed the same refusal once per rank; `uvit demo`'s grid
# was drawn by rank 0 alone while the others waited. Now the refusal is printed once, and the
# ranks share the grid's samples: the same PNG as one process draws from the same weights.
if command -v mpirun >/dev/null; then
  mpi=(env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl=self,vader OMPI_MCA_oob_tcp_if_include=lo
    OMP_NUM_THREADS=1 timeout 300 mpirun --bind-to none --timeout 280)
  "${mpi[@]}" -np 3 "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/b3" --steps 1 --batch 4 -q \
    >"$tmp/out" 2>"$tmp/err"
  rc=$?
  if grep -q "built without MPI" "$tmp/err"; then
    echo "skip: mpirun checks (built without MPI)"
  else
    n=$(grep -c "^uvit: error: .*batch 4 does not split into 3 data-parallel slices" "$tmp/err")
    if [ $rc = 0 ] || [ "$n" != 1 ] || grep -q "rank [0-9]: batch" "$tmp/err"; then
      fail "mpirun -np 3 train --batch 4: exit $rc, $n refusals: $(cat "$tmp/err")"
    else
      echo "ok: mpirun -np 3 train --batch 4: one refusal, exit $rc"
    fi
    # Rank 0's progress line counts its own network evaluations: all of them before, now its
    # share (2 ranks: 2 of the 4 mini-batches of 25; 3 ranks: 1).
    D=$tmp/demo
    run "$UVIT" demo --out "$D" --steps 1 --set train.batch_size=6 --set sample.sample_steps=3 --no-grid
    evals() { sed -n 's|^grid .*/grid.png (one row per class) [0-9]*/\([0-9]*\) .*|\1|p' "$tmp/err" | tail -1; }
    one=$(evals)
    [ "$one" = 12 ] || fail "demo: grid progress total '$one', want 12 (4 mini-batches x 3 steps): $(tail -3 "$tmp/err")"
    for np in 2 3; do
      cp -r "$D" "$tmp/demo$np"
      rm "$tmp/demo$np/grid.png"  # the run is complete: the call draws the grid only
      run "${mpi[@]}" -np $np "$UVIT" demo --out "$tmp/demo$np" --steps 1
      want=$((np == 2 ? 6 : 3)) got=$(evals)
      if ! cmp -s "$D/grid.png" "$tmp/demo$np/grid.png"; then
        fail "mpirun -np $np demo: grid.png differs from one process's ($(tail -3 "$tmp/err"))"
      elif [ "$got" != "$want" ]; then
        fail "mpirun -np $np demo: rank 0 ran $got network evaluations of the grid, want its share $want"
      else
        echo "ok: mpirun -np $np demo: rank 0 drew its share ($got of $one evaluations), the same grid.png as one process"
      fi
    done
  fi
else
  echo "skip: mpirun checks (no mpirun)"
fi

# --- round 5 (follow-up) --------------------------------------------------------------------------
# An alias was named by its option's first name: `--autoencoder-config ''` said `--config must not
# be empty`. The spelling typed is named (both, for an option given twice under two names).
expect_error "^uvit: error: --autoencoder-config must not be empty, got ''" \
  "$UVIT" autoencoder encode --autoencoder-config ''
expect_error "^uvit: error: -c/--autoencoder-config is given 2 times; give it once (uvit help extract-features)$" \
  "$UVIT" extract-features -c sd_kl_f8 --autoencoder-config sd_kl_f8
# `train --resume ''` meant "latest" (CLI11 drops an empty optional value): here "already at step 1".
expect_error "^uvit: error: --resume must name a file or folder, got '' (leave the value out for its default: --resume; uvit help train)$" \
  "$UVIT" train --out "$U" --resume '' --steps 1
expect_error "^uvit: error: --resume must name a file or folder, got ''" "$UVIT" train --out "$U" --resume= --steps 1

# A bad command line and the settings' checks made before MPI starts were printed by every rank:
# now by rank 0 alone (the launcher's rank: OMPI_COMM_WORLD_RANK, PMI(X)_RANK, or SLURM_PROCID in
# a Slurm job of several tasks), every rank exiting 1. A missing --config file was every rank's
# line; since 2026-12-07 train's checks before its work are decided by the ranks together
# (docs/distributed.md "Errors before the work"): one line, the error alone when every rank met it.
before=$fails
for procid in 0 1; do
  SLURM_NTASKS=2 SLURM_PROCID=$procid "$UVIT" train --bogus >"$tmp/out" 2>"$tmp/err"
  rc=$? n=$(grep -c "^uvit: error: --bogus: not an option of train" "$tmp/err")
  want=$((procid == 0 ? 1 : 0))
  [ $rc = 1 ] && [ "$n" = $want ] && [ "$(wc -l <"$tmp/err")" = $want ] ||
    fail "srun task $procid: train --bogus: exit $rc, $n errors, want $want: $(cat "$tmp/err")"
  SLURM_NTASKS=2 SLURM_PROCID=$procid "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/s$procid" \
    --steps 1 >"$tmp/out" 2>"$tmp/err"
  rc=$? n=$(grep -c "^uvit: error: Slurm runs this job as 2 tasks" "$tmp/err")
  [ $rc = 1 ] && [ "$n" = $want ] && [ "$(wc -l <"$tmp/err")" = $want ] ||
    fail "srun task $procid without PMI: exit $rc, $n refusals, want $want: $(cat "$tmp/err")"
done
[ $fails = "$before" ] && echo "ok: srun tasks: the command line's and the Slurm guard's errors from task 0 only"
if command -v mpirun >/dev/null; then
  mpi=(env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl=self,vader OMPI_MCA_oob_tcp_if_include=lo
    OMP_NUM_THREADS=1 UVIT="$UVIT" timeout 120 mpirun --bind-to none --timeout 110 -np 2)
  # Each rank says its exit status (through sh, so that mpirun stops none of them early).
  each_rank() { "${mpi[@]}" sh -c '"$UVIT" "$@"; echo "rank $OMPI_COMM_WORLD_RANK exit $?"' sh "$@" \
    >"$tmp/out" 2>"$tmp/err"; }
  for args in "train --bogus|--bogus: not an option of train (uvit help train)|1" \
    "train --config lavin_dit_tiny --out $tmp/lv|config lavin_dit_tiny is LaVin-DiT: uvit train does not train it|1" \
    "train --config $tmp/none.json --out $tmp/nf|config '$tmp/none.json' not found|1" \
    "sample --config fmnist_uvit_tiny --weights $W --n 2 --steps 2 --out $tmp/m.png|config fmnist_uvit_tiny is class-conditional: give --class K or --classes all|1" \
    "sample --config fmnist_uvit_tiny --weights $W --n 2 --class 1 --sampler ddpm --steps 1001 --out $tmp/m.png|steps 1001: the ddpm sampler takes at most|1"; do
    IFS='|' read -r cmd msg want <<<"$args"
    # shellcheck disable=SC2086
    each_rank $cmd
    n=$(grep -cF "uvit: error: $msg" "$tmp/err")
    if [ "$n" != "$want" ] || [ "$(grep -c '^uvit: error' "$tmp/err")" != "$want" ] ||
      [ "$(sort "$tmp/out" | tr '\n' ' ')" != "rank 0 exit 1 rank 1 exit 1 " ]; then
      fail "mpirun -np 2 uvit $cmd: $n errors (want $want), $(cat "$tmp/out" "$tmp/err")"
    else
      echo "ok: mpirun -np 2 uvit $cmd: $n error line(s), both ranks exit 1"
    fi
  done
fi


# --- found by the follow-up, fixed by the lead -----------------------------------------------------
# DDPM/DDIM with more steps than the diffusion has: the respacing's "space_timesteps: cannot divide
# a section of 1000 steps into 1001" (ADM presets) or "DDIM/DDPM: steps = 1001 is not in 1..1000",
# naming no option and no limit.
run "$UVIT" train --config fmnist_dit_tiny --out "$tmp/dit" --steps 1 --batch 2 --no-grid -q
for c in "fmnist_uvit_tiny $W" "fmnist_dit_tiny $tmp/dit/nnet_ema.safetensors"; do
  for s in ddpm ddim; do
    set -- $c
    expect_error "^uvit: error: steps 1001: the $s sampler takes at most the 1000 steps of config $1's diffusion" \
      "$UVIT" sample --config "$1" --weights "$2" --class 1 --n 1 --sampler $s --steps 1001 --out "$tmp/s.png"
  done
done
[ ! -e "$tmp/s.png" ] || fail "a refused --steps 1001 still sampled"

exit $fails
