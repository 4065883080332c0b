# Shared by the MPI end-to-end scripts (sourced after $tmp is set): 2 CPU ranks of one thread;
# every mpirun bounded by `timeout`.
source tests/e2e/data/lib.sh
mpi() {  # mpi NP ARGS...: uvit under mpirun
  local np=$1; shift
  timeout -k 10 300 "$MPIRUN" -np "$np" "$UVIT" "$@"
}
