// MPI communicator (docs/distributed.md, "Ordered reduction").
#include "dist/mpi_comm.hpp"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstring>
#include <thread>

#include "dist/comm_impl.hpp"
#include "uvit/error.hpp"

namespace uvit {

namespace {
void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw Error(cat(what, " failed: ", std::string(msg, size_t(len))));
}
// MPI_Waitall, yielding the core between polls: OpenMPI's shared-memory transport spins in
// MPI_Waitall, which on a busy core takes the time backward needs (train.overlap's thread).
void wait_all(std::vector<MPI_Request>& reqs) {
  int done = 0;
  for (;;) {
    check(MPI_Testall(int(reqs.size()), reqs.data(), &done, MPI_STATUSES_IGNORE), "MPI_Testall");
    if (done) return;
    std::this_thread::yield();
  }
}
int count(size_t n, const char* what) {
  UVIT_CHECK(n <= size_t(INT_MAX), what, ": ", n, " elements exceed MPI's int counts");
  return int(n);
}
}  // namespace

MpiComm::MpiComm() {
  // SERIALIZED: train.overlap's communication thread calls MPI while the main thread does not
  // (docs/distributed.md, "Overlap"); a library that grants less keeps the exchange on the main
  // thread.
  int provided = 0;
  check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
  serialized_ = provided >= MPI_THREAD_SERIALIZED;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  MPI_Comm node;  // the ranks sharing this node's memory: local rank for the GPU choice
  check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node),
        "MPI_Comm_split_type");
  MPI_Comm_rank(node, &local_rank_);
  MPI_Comm_free(&node);
}

MpiComm::~MpiComm() {
  int done = 0;
  MPI_Finalized(&done);
  if (!done) MPI_Finalize();
}

void MpiComm::barrier() { check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }

void MpiComm::idle_barrier() {
  MPI_Request r;
  check(MPI_Ibarrier(MPI_COMM_WORLD, &r), "MPI_Ibarrier");
  for (int done = 0;;) {
    check(MPI_Test(&r, &done, MPI_STATUS_IGNORE), "MPI_Test");
    if (done) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void MpiComm::bcast(void* data, size_t bytes, int root) {
  check(MPI_Bcast(data, count(bytes, "bcast"), MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
}

void MpiComm::allgather_bytes(const void* in, size_t bytes, void* out) {
  const int c = count(bytes, "allgather");
  check(MPI_Allgather(in, c, MPI_BYTE, out, c, MPI_BYTE, MPI_COMM_WORLD), "MPI_Allgather");
}

std::vector<uint8_t> MpiComm::gatherv_bytes(const void* in, size_t bytes, int root) {
  const int c = count(bytes, "gatherv");
  std::vector<int> counts(static_cast<size_t>(size_)), displs(counts.size());
  check(MPI_Gather(&c, 1, MPI_INT, counts.data(), 1, MPI_INT, root, MPI_COMM_WORLD), "MPI_Gather");
  std::vector<uint8_t> out;
  if (rank_ == root) {
    size_t total = 0;
    for (int r = 0; r < size_; ++r) {
      displs[size_t(r)] = count(total, "gatherv");
      total += size_t(counts[size_t(r)]);
    }
    out.resize(total);
  }
  check(MPI_Gatherv(in, c, MPI_BYTE, out.data(), counts.data(), displs.data(), MPI_BYTE, root,
                    MPI_COMM_WORLD),
        "MPI_Gatherv");
  return out;
}

namespace {
// Rank d's elements of [lo, hi): its shard's [begin, begin + len) of the vector.
struct Part {
  size_t begin, len;
};
Part part_of(size_t n, size_t sh, int d, size_t lo, size_t hi) {
  const ShardRange r = shard_range(n, sh, d);
  const size_t a = std::max(r.lo, lo), b = std::min(r.hi, hi);
  return {a, a < b ? b - a : 0};
}
}  // namespace

void MpiComm::reduce_scatter_ordered(const float* bufs, int k, size_t n, size_t stride, size_t sh,
                                     float* shard) {
  reduce_scatter_range(bufs, k, n, stride, sh, 0, n, shard);
}

void MpiComm::reduce_scatter_range(const float* bufs, int k, size_t n, size_t stride, size_t sh,
                                   size_t lo, size_t hi, float* shard) {
  const int W = size_;
  UVIT_CHECK(k >= 1 && sh * size_t(W) >= n, "reduce_scatter_ordered: ", W, " shards of ", sh,
             " floats cannot hold ", n);
  UVIT_CHECK(lo <= hi && hi <= n, "reduce_scatter_range: [", lo, ", ", hi, ") is not within [0, ",
             n, ")");
  const size_t piece = std::min(reduce_piece(W, k), std::max<size_t>(sh, 1));
  count(piece, "reduce_scatter_ordered");
  std::vector<Part> parts(static_cast<size_t>(W));
  size_t longest = 0;
  for (int d = 0; d < W; ++d) {
    parts[size_t(d)] = part_of(n, sh, d, lo, hi);
    longest = std::max(longest, parts[size_t(d)].len);
  }
  const Part me = parts[size_t(rank_)];
  float* out = me.len ? shard + (me.begin - shard_range(n, sh, rank_).lo) : shard;
  recv_.resize(size_t(W) * size_t(k) * std::min(piece, me.len));
  std::vector<MPI_Request> reqs;
  reqs.reserve(size_t(2 * W * k));
  // Piece [at, at + piece) of every rank's part per round: rank d gets its piece of each of this
  // rank's buffers, this rank its own from everyone, laid out [source rank][buffer][piece], i.e.
  // in logical-rank order. For [0, n) the parts are the shards.
  for (size_t at = 0; at < longest; at += piece) {
    auto len = [&](int d) {
      const size_t l = parts[size_t(d)].len;
      return at < l ? std::min(piece, l - at) : 0;
    };
    const size_t my = len(rank_);
    reqs.clear();
    for (int src = 0; src < W; ++src)
      for (int j = 0; j < k && my > 0 && src != rank_; ++j) {
        reqs.emplace_back();
        check(MPI_Irecv(recv_.data() + (size_t(src) * k + size_t(j)) * my, int(my), MPI_FLOAT, src,
                        j, MPI_COMM_WORLD, &reqs.back()),
              "MPI_Irecv");
      }
    for (int d = 0; d < W; ++d)
      for (int j = 0; j < k && len(d) > 0 && d != rank_; ++j) {
        reqs.emplace_back();
        check(MPI_Isend(bufs + size_t(j) * stride + parts[size_t(d)].begin + at, int(len(d)),
                        MPI_FLOAT, d, j, MPI_COMM_WORLD, &reqs.back()),
              "MPI_Isend");
      }
    for (int j = 0; j < k && my > 0; ++j)
      std::memcpy(recv_.data() + (size_t(rank_) * k + size_t(j)) * my,
                  bufs + size_t(j) * stride + me.begin + at, my * sizeof(float));
    wait_all(reqs);
    // Every send of this piece is done, so it may overwrite its own input (in place).
    if (my > 0) ordered_sum(recv_.data(), W * k, my, my, out + at);
  }
}

void MpiComm::allgather_shards(float* full, size_t n, size_t sh) {
  allgather_range(full, n, sh, 0, n);
}

void MpiComm::allgather_range(float* full, size_t n, size_t sh, size_t lo, size_t hi) {
  const int W = size_;
  UVIT_CHECK(sh * size_t(W) >= n, "allgather_shards: ", W, " shards of ", sh,
             " floats cannot hold ", n);
  UVIT_CHECK(lo <= hi && hi <= n, "allgather_range: [", lo, ", ", hi, ") is not within [0, ", n,
             ")");
  // Every rank sends its part to every other straight from and into `full` (no buffer), in
  // messages that fit MPI's int counts.
  const size_t msg = size_t(1) << 28;
  std::vector<MPI_Request> reqs;
  for (int src = 0; src < W; ++src) {
    const Part p = part_of(n, sh, src, lo, hi);
    for (size_t at = 0; at < p.len && src != rank_; at += msg) {
      reqs.emplace_back();
      check(MPI_Irecv(full + p.begin + at, int(std::min(msg, p.len - at)), MPI_FLOAT, src, 0,
                      MPI_COMM_WORLD, &reqs.back()),
            "MPI_Irecv");
    }
  }
  const Part me = part_of(n, sh, rank_, lo, hi);
  for (int d = 0; d < W; ++d)
    for (size_t at = 0; at < me.len && d != rank_; at += msg) {
      reqs.emplace_back();
      check(MPI_Isend(full + me.begin + at, int(std::min(msg, me.len - at)), MPI_FLOAT, d, 0,
                      MPI_COMM_WORLD, &reqs.back()),
            "MPI_Isend");
    }
  wait_all(reqs);
}

std::unique_ptr<Comm> make_mpi_comm(const std::string& device) {
#ifdef UVIT_HAVE_NCCL
  if (device == "cuda") return make_nccl_comm();
#else
  (void)device;
#endif
  return std::make_unique<MpiComm>();
}

void mpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

}  // namespace uvit
