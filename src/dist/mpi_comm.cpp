// MPI communicator (docs/distributed.md, "Ordered reduction").
#include "dist/mpi_comm.hpp"

#include <climits>

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

void MpiComm::reduce_scatter_ordered(const float* bufs, int k, size_t n, float* shard) {
  UVIT_CHECK(n % size_t(size_) == 0, "reduce_scatter_ordered: ", n, " floats do not split over ",
             size_, " ranks");
  const size_t sh = n / size_t(size_);
  const int c = count(sh, "reduce_scatter_ordered");
  count(sh * size_t(k), "reduce_scatter_ordered");
  // What goes to rank d: shard d of each local buffer, k blocks of sh floats n apart. Resized so
  // that rank d + 1's blocks start sh floats further.
  MPI_Datatype blocks, per_rank;
  check(MPI_Type_vector(k, c, count(n, "reduce_scatter_ordered"), MPI_FLOAT, &blocks),
        "MPI_Type_vector");
  check(MPI_Type_create_resized(blocks, 0, MPI_Aint(sh * sizeof(float)), &per_rank),
        "MPI_Type_create_resized");
  MPI_Type_commit(&per_rank);
  recv_.resize(size_t(size_) * size_t(k) * sh);
  const int rc = MPI_Alltoall(bufs, 1, per_rank, recv_.data(), c * k, MPI_FLOAT, MPI_COMM_WORLD);
  MPI_Type_free(&per_rank);
  MPI_Type_free(&blocks);
  check(rc, "MPI_Alltoall");
  // recv_ is [source rank][local buffer][sh]: logical-rank order.
  ordered_sum(recv_.data(), size_ * k, sh, sh, shard);
}

void MpiComm::allgather(const float* shard, size_t shard_n, float* full) {
  const int c = count(shard_n, "allgather");
  check(MPI_Allgather(shard, c, MPI_FLOAT, full, c, MPI_FLOAT, MPI_COMM_WORLD), "MPI_Allgather");
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
