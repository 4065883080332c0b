// NCCL communicator for CUDA buffers (docs/distributed.md): MPI starts the job, picks the GPU
// (node-local rank) and broadcasts NCCL's unique id; the ordered reduction is NCCL send/recv
// (an all-to-all of shards), an ordered-sum kernel and ncclAllGather. Control messages (flags,
// losses, gathers of samples) stay on MPI.
#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <memory>

#include "dist/comm_impl.hpp"
#include "dist/mpi_comm.hpp"
#include "uvit/error.hpp"

namespace uvit {

void cuda_ordered_sum(const float* parts, int count, size_t n, float* out, cudaStream_t stream);

namespace {
void cuda_check(cudaError_t e, const char* what) {
  UVIT_CHECK(e == cudaSuccess, what, ": ", cudaGetErrorString(e));
}
void nccl_check(ncclResult_t r, const char* what) {
  UVIT_CHECK(r == ncclSuccess, what, ": ", ncclGetErrorString(r));
}
struct CudaFree {
  void operator()(float* p) const { cudaFree(p); }
};

class NcclComm final : public MpiComm {
 public:
  NcclComm() {
    int devices = 0;
    cuda_check(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
    UVIT_CHECK(devices > 0, "NCCL: no CUDA device on this node");
    // One device per rank: the node-local rank picks it (NCCL refuses two ranks on one GPU).
    cuda_check(cudaSetDevice(local_rank() % devices), "cudaSetDevice");
    ncclUniqueId id;
    if (rank() == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    bcast(&id, sizeof id, 0);
    nccl_check(ncclCommInitRank(&comm_, size(), id, rank()), "ncclCommInitRank");
    cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  }
  ~NcclComm() override {
    if (stream_) cudaStreamDestroy(stream_);
    if (comm_) ncclCommDestroy(comm_);
  }
  std::string name() const override { return "nccl"; }
  bool device_buffers() const override { return true; }
  // The ranged exchange is MpiComm's (host buffers): train.overlap keeps CUDA on the whole
  // exchange after backward (docs/distributed.md, "Overlap").
  bool overlap_threads() const override { return false; }

  // As MpiComm's, on the device: per piece one group of sends and receives, then the ordered-sum
  // kernel, all on one stream (the next piece's receives wait for the kernel that reads them).
  void reduce_scatter_ordered(const float* bufs, int k, size_t n, size_t stride, size_t sh,
                              float* shard) override {
    const int W = size();
    UVIT_CHECK(k >= 1 && sh * size_t(W) >= n, "reduce_scatter_ordered: ", W, " shards of ", sh,
               " floats cannot hold ", n);
    const size_t piece = std::min(reduce_piece(W, k), std::max<size_t>(sh, 1));
    const size_t need = size_t(W) * size_t(k) * std::min(piece, shard_len(n, sh, rank()));
    if (need > recv_n_) {
      float* p = nullptr;
      cuda_check(cudaMalloc(&p, need * sizeof(float)), "cudaMalloc (NCCL receive buffer)");
      recv_.reset(p);
      recv_n_ = need;
    }
    cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");  // the gradients are complete
    for (size_t at = 0; at < shard_len(n, sh, 0); at += piece) {
      auto len = [&](int d) {
        const size_t l = shard_len(n, sh, d);
        return at < l ? std::min(piece, l - at) : 0;
      };
      const size_t my = len(rank());
      nccl_check(ncclGroupStart(), "ncclGroupStart");
      for (int d = 0; d < W; ++d)
        for (int j = 0; j < k; ++j) {
          if (len(d) > 0)
            nccl_check(ncclSend(bufs + size_t(j) * stride + size_t(d) * sh + at, len(d), ncclFloat,
                                d, comm_, stream_),
                       "ncclSend");
          if (my > 0)
            nccl_check(
                ncclRecv(recv_.get() + (size_t(d) * k + j) * my, my, ncclFloat, d, comm_, stream_),
                "ncclRecv");
        }
      nccl_check(ncclGroupEnd(), "ncclGroupEnd");
      cuda_ordered_sum(recv_.get(), W * k, my, shard + at, stream_);
      cuda_check(cudaGetLastError(), "ordered_sum_kernel launch");  // the sync below misses these
    }
    cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  }

  // In place: every rank sends its shard to every other (ncclAllGather would need size()*sh
  // floats at `full`, more than the n of the parameters).
  void allgather_shards(float* full, size_t n, size_t sh) override {
    const int W = size();
    UVIT_CHECK(sh * size_t(W) >= n, "allgather_shards: ", W, " shards of ", sh,
               " floats cannot hold ", n);
    const size_t mine = shard_len(n, sh, rank());
    cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    nccl_check(ncclGroupStart(), "ncclGroupStart");
    for (int d = 0; d < W; ++d) {
      if (d == rank()) continue;
      if (mine > 0)
        nccl_check(ncclSend(full + size_t(rank()) * sh, mine, ncclFloat, d, comm_, stream_),
                   "ncclSend");
      if (const size_t l = shard_len(n, sh, d); l > 0)
        nccl_check(ncclRecv(full + size_t(d) * sh, l, ncclFloat, d, comm_, stream_), "ncclRecv");
    }
    nccl_check(ncclGroupEnd(), "ncclGroupEnd");
    cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  }

 private:
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<float, CudaFree> recv_;
  size_t recv_n_ = 0;
};
}  // namespace

std::unique_ptr<Comm> make_nccl_comm() { return std::make_unique<NcclComm>(); }

}  // namespace uvit
