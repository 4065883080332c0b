// MPI communicator (docs/distributed.md, "Ordered reduction").
#include "dist/mpi_comm.hpp"

#include <algorithm>
#include <climits>
#include <cstring>

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
int count(size_t n, const char* what) {
  UVIT_CHECK(n <= size_t(INT_MAX), what, ": ", n, " elements exceed MPI's int counts");
  return int(n);
}
}  // namespace

MpiComm::MpiComm() {
  int provided = 0;
  check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
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

void MpiComm::reduce_scatter_ordered(const float* bufs, int k, size_t n, size_t stride, size_t sh,
                                     float* shard) {
  const int W = size_;
  UVIT_CHECK(k >= 1 && sh * size_t(W) >= n, "reduce_scatter_ordered: ", W, " shards of ", sh,
             " floats cannot hold ", n);
  const size_t piece = std::min(reduce_piece(W, k), std::max<size_t>(sh, 1));
  count(piece, "reduce_scatter_ordered");
  const size_t mine = shard_len(n, sh, rank_);
  recv_.resize(size_t(W) * size_t(k) * std::min(piece, mine));
  std::vector<MPI_Request> reqs;
  reqs.reserve(size_t(2 * W * k));
  // Piece [at, at + piece) of every shard per round (rank 0's shard is the longest): rank d gets
  // its piece of each of this rank's buffers, this rank its own from everyone, laid out
  // [source rank][buffer][piece], i.e. in logical-rank order.
  for (size_t at = 0; at < shard_len(n, sh, 0); at += piece) {
    auto len = [&](int d) {
      const size_t l = shard_len(n, sh, d);
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
        check(MPI_Isend(bufs + size_t(j) * stride + size_t(d) * sh + at, int(len(d)), MPI_FLOAT, d,
                        j, MPI_COMM_WORLD, &reqs.back()),
              "MPI_Isend");
      }
    for (int j = 0; j < k && my > 0; ++j)
      std::memcpy(recv_.data() + (size_t(rank_) * k + size_t(j)) * my,
                  bufs + size_t(j) * stride + size_t(rank_) * sh + at, my * sizeof(float));
    check(MPI_Waitall(int(reqs.size()), reqs.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
    // Every send of this piece is done, so it may overwrite its own input (in place).
    if (my > 0) ordered_sum(recv_.data(), W * k, my, my, shard + at);
  }
}

void MpiComm::allgather_shards(float* full, size_t n, size_t sh) {
  const int W = size_;
  UVIT_CHECK(sh * size_t(W) >= n, "allgather_shards: ", W, " shards of ", sh,
             " floats cannot hold ", n);
  // Every rank sends its shard to every other straight from and into `full` (no buffer), in
  // messages that fit MPI's int counts.
  const size_t msg = size_t(1) << 28;
  std::vector<MPI_Request> reqs;
  for (int src = 0; src < W; ++src) {
    const size_t l = shard_len(n, sh, src);
    for (size_t at = 0; at < l && src != rank_; at += msg) {
      reqs.emplace_back();
      check(MPI_Irecv(full + size_t(src) * sh + at, int(std::min(msg, l - at)), MPI_FLOAT, src, 0,
                      MPI_COMM_WORLD, &reqs.back()),
            "MPI_Irecv");
    }
  }
  const size_t mine = shard_len(n, sh, rank_);
  for (int d = 0; d < W; ++d)
    for (size_t at = 0; at < mine && d != rank_; at += msg) {
      reqs.emplace_back();
      check(MPI_Isend(full + size_t(rank_) * sh + at, int(std::min(msg, mine - at)), MPI_FLOAT, d,
                      0, MPI_COMM_WORLD, &reqs.back()),
            "MPI_Isend");
    }
  check(MPI_Waitall(int(reqs.size()), reqs.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
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
