// MPI_COMM_WORLD as a uvit::Comm (host buffers). Owns MPI's lifetime: MPI_Init_thread(SERIALIZED)
// on construction (one thread calls MPI at a time: the main thread, or train.overlap's
// communication thread while the main thread computes), MPI_Finalize on destruction.
#pragma once
#include <mpi.h>

#include "uvit/dist.hpp"

namespace uvit {

class MpiComm : public Comm {
 public:
  MpiComm();
  ~MpiComm() override;
  std::string name() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  void barrier() override;
  void idle_barrier() override;  // MPI_Ibarrier, tested every millisecond between sleeps
  void bcast(void* data, size_t bytes, int root) override;
  void allgather_bytes(const void* in, size_t bytes, void* out) override;
  std::vector<uint8_t> gatherv_bytes(const void* in, size_t bytes, int root) override;
  // Shard r of every local buffer to rank r (point to point, a piece at a time), then the
  // ordered sum on the host: the bytes of a ring all-reduce, with an order no MPI algorithm
  // choice can change, and a receive buffer of reduce_piece() floats per logical rank.
  void reduce_scatter_ordered(const float* bufs, int k, size_t n, size_t stride, size_t sh,
                              float* shard) override;
  void allgather_shards(float* full, size_t n, size_t sh) override;
  void reduce_scatter_range(const float* bufs, int k, size_t n, size_t stride, size_t sh, size_t lo,
                            size_t hi, float* shard) override;
  void allgather_range(float* full, size_t n, size_t sh, size_t lo, size_t hi) override;
  bool overlap_threads() const override { return serialized_; }

 private:
  int rank_ = 0, size_ = 1, local_rank_ = 0;
  bool serialized_ = false;  // MPI granted MPI_THREAD_SERIALIZED
  std::vector<float> recv_;  // [size][k][piece]
};

}  // namespace uvit
