// Data parallelism across processes (docs/distributed.md): a communicator over the ranks of a job
// started by mpirun or srun, and the deterministic ordered gradient reduction that makes W ranks
// bit-identical to one process emulating W "virtual ranks".
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace uvit {

class Comm {
 public:
  virtual ~Comm() = default;
  virtual std::string name() const = 0;  // "single", "mpi" or "nccl"
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int local_rank() const { return 0; }  // rank among the processes of this node
  virtual void barrier() = 0;
  // A barrier whose waiting rank sleeps instead of polling on its core (OpenMPI's barrier spins):
  // for a wait of seconds while other ranks compute on the same cores, e.g. the demo's grid, where
  // a rank done with its share waits for the others. Default: barrier().
  virtual void idle_barrier() { barrier(); }
  virtual void bcast(void* data, size_t bytes, int root) = 0;
  // Every rank gives `bytes`; out (size() * bytes) receives them in rank order.
  virtual void allgather_bytes(const void* in, size_t bytes, void* out) = 0;
  // Every rank gives any number of bytes; root returns their concatenation in rank order, the
  // other ranks an empty vector.
  virtual std::vector<uint8_t> gatherv_bytes(const void* in, size_t bytes, int root) = 0;
  // Whether reduce_scatter_ordered/allgather_shards take device (CUDA) pointers; else host ones.
  virtual bool device_buffers() const { return false; }
  // The ordered reduction (docs/distributed.md). Shard d of a vector of n floats is its elements
  // [d*sh, (d+1)*sh) clipped to n (size()*sh >= n). `bufs` holds k buffers of n floats, `stride`
  // floats apart: this rank's logical ranks rank*k .. rank*k + k-1. `shard` receives this rank's
  // shard of ((b_0 + b_1) + b_2) + ... over all size*k logical buffers in logical-rank order
  // (shard_len(n, sh, rank) floats): the same bits for any split of the logical ranks over
  // processes. `shard` may be bufs + rank*sh (in place). The exchange runs in pieces of
  // reduce_piece() floats of the shard: no gradient-sized receive buffer.
  virtual void reduce_scatter_ordered(const float* bufs, int k, size_t n, size_t stride, size_t sh,
                                      float* shard) = 0;
  // In place: `full` (n floats) holds this rank's shard (as above); afterwards every rank's.
  virtual void allgather_shards(float* full, size_t n, size_t sh) = 0;

  // The exchange of elements [lo, hi) of the vector only (the overlap of the exchange with
  // backward, docs/distributed.md "Overlap"): as reduce_scatter_ordered, but `shard` (still this
  // rank's whole shard) receives only its elements in [lo, hi), and as allgather_shards for the
  // shards' elements in [lo, hi). Each element's sum is the same for any cut of [0, n) into
  // ranges, so the bits are those of the whole exchange. Every rank must give the same ranges in
  // the same order. Communicators that cannot run them refuse (overlap_threads() false).
  virtual void reduce_scatter_range(const float* bufs, int k, size_t n, size_t stride, size_t sh,
                                    size_t lo, size_t hi, float* shard);
  virtual void allgather_range(float* full, size_t n, size_t sh, size_t lo, size_t hi);
  // Whether the range calls above may run on a thread of their own while the thread that made
  // the communicator calls nothing on it (MPI: the library granted MPI_THREAD_SERIALIZED).
  virtual bool overlap_threads() const { return false; }
};

// The communicator of this process: MPI (or NCCL for `device` "cuda" when built with it) when a
// launcher started the process (OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK in the environment),
// else a single rank. A plain `uvit ...` never initialises MPI. Created on first use.
Comm& world(const std::string& device = "cpu");
// Whether the environment says a launcher (mpirun, mpiexec, srun --mpi=...) started this process.
bool launched_by_mpi();
// This process's rank as the launcher's environment says it, readable before MPI starts:
// OMPI_COMM_WORLD_RANK, PMIX_RANK or PMI_RANK, else SLURM_PROCID in a Slurm job of several tasks,
// else 0. main() prints an error every rank meets alike from rank 0 only (docs/cli.md).
int launcher_rank();
// Refuses a job the scheduler runs as several tasks that MPI sees as one (SLURM_NTASKS > 1 but a
// world of 1: srun without PMI/PMIx support, or a build without MPI): each task would train alone.
void check_world_matches_scheduler(const Comm& c);
// "rank R: " in a job of several ranks (error messages), else "".
std::string rank_prefix();
// Ends every rank of a parallel job with `code` (MPI_Abort); returns when there is none.
void abort_job(int code);

// Fault tests' hook: UVIT_TEST_DIE=RANK:STEP[:PHASE] (PHASE "step", the default: before training
// step STEP + 1; "save": inside the checkpoint of step STEP, after nnet.safetensors). The named
// rank prints a line naming itself and _exit(77)s: no checkpoint, no MPI_Finalize.
void test_hook_die(const Comm& c, long step, const char* phase);

// Sum of n floats over k contiguous buffers (stride `stride`), added left to right. `out` may be
// `bufs` (in place).
void ordered_sum(const float* bufs, int k, size_t n, size_t stride, float* out);
// The shard of each of `ranks` ranks for a vector of n floats (ZeRO-1, the reduce-scatter): a
// multiple of 16 floats (64 bytes), so that every shard starts aligned; the last one is cut short.
inline size_t shard_size(size_t n, int ranks) {
  const size_t unit = size_t(ranks) * 16;
  return (n + unit - 1) / unit * 16;
}
// Shard `rank` of a vector of n floats cut into shards of sh: elements [lo, hi) =
// [rank*sh, +sh) ∩ [0, n).
struct ShardRange {
  size_t lo, hi;
};
inline ShardRange shard_range(size_t n, size_t sh, int rank) {
  const size_t lo = size_t(rank) * sh < n ? size_t(rank) * sh : n;
  return {lo, n - lo < sh ? n : lo + sh};
}
// Floats of shard `rank` (shard_range's hi - lo).
inline size_t shard_len(size_t n, size_t sh, int rank) {
  const ShardRange r = shard_range(n, sh, rank);
  return r.hi - r.lo;
}
// The piece of the reduction's exchange, in floats of one shard, for `ranks` ranks holding k
// buffers each: a receive buffer of ranks*k pieces is 16 MB (at least 1 float a piece). The
// environment variable UVIT_REDUCE_PIECE (floats) overrides it; the tests set it small so that
// pieces cut tensors and shards (the result has the same bits for any piece).
size_t reduce_piece(int ranks, int k);
// OR of a flag over all ranks.
bool any_rank(Comm& c, bool flag);
// Every rank's k doubles, in rank order, on every rank.
std::vector<double> allgather_doubles(Comm& c, const std::vector<double>& mine);

// ZeRO-1's checkpoint (docs/distributed.md): rank 0 receives elements [0, n) of a vector the ranks
// hold in shards (rank r: [r*shard, (r+1)*shard), clipped to n), in pieces of at most `chunk`
// floats, in order: sink(data, count) runs on rank 0 only. fetch(local_offset, count, scratch)
// returns a host pointer to this rank's elements from local_offset on: its own memory, or scratch
// (chunk floats) after a download from the device. Collective (one gather per piece that lies
// beyond rank 0's shard); no rank holds more than two pieces.
using ShardFetch = std::function<const float*(size_t local_offset, size_t count, float* scratch)>;
using ShardSink = std::function<void(const float* data, size_t count)>;
void gather_shards(Comm& c, size_t n, size_t shard, size_t chunk, const ShardFetch& fetch,
                   const ShardSink& sink);

// The ranks of a single process (always built; the W = 1 case of every code path).
class SingleComm final : public Comm {
 public:
  std::string name() const override { return "single"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void barrier() override {}
  void bcast(void*, size_t, int) override {}
  void allgather_bytes(const void* in, size_t bytes, void* out) override;
  std::vector<uint8_t> gatherv_bytes(const void* in, size_t bytes, int root) override;
  void reduce_scatter_ordered(const float* bufs, int k, size_t n, size_t stride, size_t sh,
                              float* shard) override;
  void allgather_shards(float*, size_t, size_t) override {}  // the one shard is the whole
};

}  // namespace uvit
