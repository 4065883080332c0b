# Shared by the MPI end-to-end scripts, sourced (after `set -uo pipefail`) with the script's
# arguments: uvit, mpirun and, for the FID scripts, the torch fixtures folder. 2 CPU ranks of one
# thread; every mpirun bounded by `timeout`.
UVIT=$1 MPIRUN=$2 FIX=${3:-} PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
# failing CMD...: CMD (mpirun or `mpi`) for a job expected to end with an error. OpenMPI 4.1's mpirun,
# once a rank exits non-zero (or calls MPI_Abort), sleeps odls_base_sigkill_timeout before its
# SIGTERM and again before its SIGKILL, even when every rank has already exited: 60 s a run with
# the 30 s UVIT_MPI_ENV sets for faults.sh's signal checks, 2 s with OpenMPI's default 1 s
# (docs/distributed.md "Errors under mpirun").
failing() { OMPI_MCA_odls_base_sigkill_timeout=1 "$@"; }
# one_error_line PATTERN CMD...: `mpirun -np 2 CMD...` (an expected failure) exits 1 with exactly
# one "uvit: error:" line, matching "^uvit: error: PATTERN" (grep), from rank 0, and neither
# MPI_Abort's lines nor an eval's "interrupted" note: the ranks refused together. Bounded by
# ${LIMIT:-300} seconds (a check that a rank no longer waits for another gives less).
one_error_line() {
  local pattern=$1; shift
  failing timeout -k 10 "${LIMIT:-300}" "$MPIRUN" -np 2 "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$? n; n=$(grep -c '^uvit: error:' "$tmp/err")
  if [ $rc -eq 1 ] && [ "$n" -eq 1 ] && grep -q "^uvit: error: $pattern" "$tmp/err" &&
    ! grep -q "MPI_ABORT\|^interrupted" "$tmp/err"; then
    echo "ok: $(grep '^uvit: error:' "$tmp/err")"
  else
    fail "(rc=$rc, $n error lines, want '$pattern'): $*"; cat "$tmp/err"
  fi
}
mpi() {  # mpi NP ARGS...: uvit under mpirun
  local np=$1; shift
  timeout -k 10 300 "$MPIRUN" -np "$np" "$UVIT" "$@"
}
# fid_setup STEPS NIMG: the start of the scripts that run eval and fid-features: the Inception
# weights in $W (the fixtures' or the twin's; $UVIT_INCEPTION unset), a tiny config $tmp/tiny.json
# sampling in STEPS steps in mini-batches of 4, reference statistics $tmp/st.npz and NIMG random
# 28x28 gray images $tmp/imgs.npy.
fid_setup() {
  unset UVIT_INCEPTION
  inception_weights W "$FIX"
  "$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json" sample.sample_steps="$1" \
    sample.mini_batch_size=4
  "$PY" -c "
import numpy as np
r = np.random.RandomState(0); x = r.randn(64, 2048)
np.savez('$tmp/st.npz', mu=x.mean(0), sigma=np.cov(x, rowvar=False))
np.save('$tmp/imgs.npy', r.randint(0, 256, ($2, 28, 28, 1)).astype(np.uint8))" ||
    fail "writing the reference statistics and images"
}
