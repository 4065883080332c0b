// The single-rank communicator, launcher detection and the helpers every communicator shares.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "core/env.hpp"
#include "dist/comm_impl.hpp"
#include "uvit/dist.hpp"
#include "uvit/error.hpp"

namespace uvit {

namespace {
// The tasks Slurm runs this job as (srun, sbatch --ntasks); 0 outside Slurm.
long scheduler_tasks() { return env_long("SLURM_NTASKS"); }
std::unique_ptr<Comm>& world_ptr() {
  static std::unique_ptr<Comm> c;  // destroyed after main: MPI_Finalize
  return c;
}
}  // namespace

void ordered_sum(const float* bufs, int k, size_t n, size_t stride, float* out) {
  if (out != bufs && n) std::memcpy(out, bufs, n * sizeof(float));
  for (int j = 1; j < k; ++j) {
    const float* b = bufs + size_t(j) * stride;
    for (size_t e = 0; e < n; ++e) out[e] += b[e];  // no reassociation: one add per element
  }
}

void SingleComm::allgather_bytes(const void* in, size_t bytes, void* out) {
  if (bytes) std::memcpy(out, in, bytes);
}
std::vector<uint8_t> SingleComm::gatherv_bytes(const void* in, size_t bytes, int) {
  const auto* p = static_cast<const uint8_t*>(in);
  return std::vector<uint8_t>(p, p + bytes);
}
void SingleComm::reduce_scatter_ordered(const float* bufs, int k, size_t n, size_t stride,
                                        size_t sh, float* shard) {
  UVIT_CHECK(sh >= n, "reduce_scatter_ordered: a shard of ", sh, " floats cannot hold ", n);
  ordered_sum(bufs, k, n, stride, shard);
}

void Comm::reduce_scatter_range(const float*, int, size_t, size_t, size_t, size_t, size_t, float*) {
  throw Error(cat("communicator ", name(), " has no ranged reduction (train.overlap)"));
}
void Comm::allgather_range(float*, size_t, size_t, size_t, size_t) {
  throw Error(cat("communicator ", name(), " has no ranged gather (train.overlap)"));
}

size_t reduce_piece(int ranks, int k) {
  if (const long v = env_long("UVIT_REDUCE_PIECE"); v > 0) return size_t(v);
  const size_t budget = size_t(4) << 20;  // floats: 16 MB of receive buffer
  return std::max<size_t>(1, budget / (size_t(ranks) * size_t(std::max(k, 1))));
}

bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK"})
    if (std::getenv(v)) return true;
  return false;
}

int launcher_rank() {
  for (const char* v : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"})
    if (std::getenv(v)) return int(env_long(v));
  // srun without PMI/PMIx: each task a world of 1 (check_world_matches_scheduler refuses it).
  return scheduler_tasks() > 1 ? int(env_long("SLURM_PROCID")) : 0;
}

Comm& world(const std::string& device) {
  auto& c = world_ptr();
  if (c) return *c;
  if (!launched_by_mpi()) {
    c = std::make_unique<SingleComm>();
    return *c;
  }
#ifdef UVIT_HAVE_MPI
  c = make_mpi_comm(device);
#else
  const long n = std::max(env_long("OMPI_COMM_WORLD_SIZE"), env_long("PMI_SIZE"));
  UVIT_CHECK(n <= 1,
             "this uvit was built without MPI (cmake -DUVIT_MPI=OFF or no MPI found) but "
             "was started as one of ",
             n,
             " ranks; rebuild with MPI (scripts/setup.sh "
             "installs OpenMPI) or run it without mpirun");
  c = std::make_unique<SingleComm>();
#endif
  return *c;
}

void check_world_matches_scheduler(const Comm& c) {
  const long tasks = scheduler_tasks();
  UVIT_CHECK(!(tasks > 1 && c.size() == 1), "Slurm runs this job as ", tasks,
             " tasks (SLURM_NTASKS) but MPI sees a world of 1: each task would train alone. "
             "Launch with srun --mpi=pmix (check srun --mpi=list) or mpirun -np ",
             tasks, ", with a uvit built with MPI; see docs/distributed.md");
}

std::string rank_prefix() {
  auto& c = world_ptr();
  return c && c->size() > 1 ? "rank " + std::to_string(c->rank()) + ": " : "";
}

void abort_job(int code) {
#ifdef UVIT_HAVE_MPI
  auto& c = world_ptr();
  if (c && c->size() > 1) mpi_abort(code);
#else
  (void)code;
#endif
}

void test_hook_die(const Comm& c, long step, const char* phase) {
  static const char* spec = std::getenv("UVIT_TEST_DIE");
  if (!spec) return;
  int rank = -1;
  long at = -1;
  char what[16] = "step";
  if (std::sscanf(spec, "%d:%ld:%15s", &rank, &at, what) < 2 || rank != c.rank() || at != step ||
      std::strcmp(what, phase) != 0)
    return;
  std::fprintf(stderr, "rank %d: UVIT_TEST_DIE: dying at step %ld (%s)\n", rank, step, phase);
  std::fflush(stderr);
  _exit(77);
}

bool any_rank(Comm& c, bool flag) {
  if (c.size() == 1) return flag;
  std::vector<uint8_t> all(size_t(c.size()));
  const uint8_t mine = flag;
  c.allgather_bytes(&mine, 1, all.data());
  for (uint8_t f : all)
    if (f) return true;
  return false;
}

std::vector<double> allgather_doubles(Comm& c, const std::vector<double>& mine) {
  std::vector<double> all(mine.size() * size_t(c.size()));
  c.allgather_bytes(mine.data(), mine.size() * sizeof(double), all.data());
  return all;
}

}  // namespace uvit
