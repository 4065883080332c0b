// NCCL communicator for CUDA buffers (docs/distributed.md): MPI starts the job, picks the GPU
// (node-local rank) and broadcasts NCCL's unique id; the ordered reduction is NCCL send/recv
// (an all-to-all of shards), an ordered-sum kernel and ncclAllGather. Control messages (flags,
// losses, gathers of samples) stay on MPI.
#include <cuda_runtime.h>
#include <nccl.h>

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

  void reduce_scatter_ordered(const float* bufs, int k, size_t n, float* shard) override {
    const int W = size();
    UVIT_CHECK(n % size_t(W) == 0, "reduce_scatter_ordered: ", n, " floats do not split over ", W,
               " ranks");
    const size_t sh = n / size_t(W), need = size_t(W) * size_t(k) * sh;
    if (need > recv_n_) {
      float* p = nullptr;
      cuda_check(cudaMalloc(&p, need * sizeof(float)), "cudaMalloc (NCCL receive buffer)");
      recv_.reset(p);
      recv_n_ = need;
    }
    cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");  // the gradients are complete
    nccl_check(ncclGroupStart(), "ncclGroupStart");
    for (int d = 0; d < W; ++d)
      for (int j = 0; j < k; ++j) {
        nccl_check(
            ncclSend(bufs + size_t(j) * n + size_t(d) * sh, sh, ncclFloat, d, comm_, stream_),
            "ncclSend");
        nccl_check(
            ncclRecv(recv_.get() + (size_t(d) * k + j) * sh, sh, ncclFloat, d, comm_, stream_),
            "ncclRecv");
      }
    nccl_check(ncclGroupEnd(), "ncclGroupEnd");
    cuda_ordered_sum(recv_.get(), W * k, sh, shard, stream_);
    cuda_check(cudaGetLastError(), "ordered_sum_kernel launch");  // the sync below misses these
    cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  }

  void allgather(const float* shard, size_t shard_n, float* full) override {
    cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    nccl_check(ncclAllGather(shard, full, shard_n, ncclFloat, comm_, stream_), "ncclAllGather");
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
