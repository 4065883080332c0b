# Shared by the MPI end-to-end scripts (sourced after $tmp is set): 2 CPU ranks of one thread;
# every mpirun bounded by `timeout`.
source tests/e2e/data/lib.sh
mpi() {  # mpi NP ARGS...: uvit under mpirun
  local np=$1; shift
  timeout -k 10 300 "$MPIRUN" -np "$np" "$UVIT" "$@"
}
same_weights() {  # same_weights DIR_A DIR_B WHAT: nnet and nnet_ema byte for byte
  local f bad=0
  for f in nnet.safetensors nnet_ema.safetensors; do
    cmp -s "$1/$f" "$2/$f" || { fail "$3: $f differs"; bad=1; }
  done
  [ $bad -eq 0 ] && echo "ok: $3: identical weights and EMA"
}
