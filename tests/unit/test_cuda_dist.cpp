// Data parallelism on the GPU (docs/distributed.md): the virtual-rank split and the NCCL ordered
// reduction. Skip without a CUDA GPU (NCCL with 2+ ranks needs 2+ GPUs: not tested here).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "gpu_compare.hpp"
#include "uvit/config.hpp"
#include "uvit/dist.hpp"
#include "uvit/train.hpp"
#ifdef UVIT_TEST_NCCL
#include <cuda_runtime.h>

namespace uvit {
std::unique_ptr<Comm> make_nccl_comm();  // src/dist/nccl_comm.cpp
}
#endif

using namespace uvit;
namespace fs = std::filesystem;

namespace {
class Items28 : public Dataset {
 public:
  int64_t size() const override { return 64; }
  std::array<int64_t, 3> item_shape() const override { return {1, 28, 28}; }
  int num_classes() const override { return 10; }
  int64_t get(int64_t i, float* x, float*, const DrawRng&) const override {
    Philox(5, uint64_t(i)).fill_normal(x, 28 * 28);
    for (int k = 0; k < 28 * 28; ++k) x[k] = std::tanh(x[k]);
    return i % 10;
  }
  std::string describe() const override { return "items28"; }
};

std::vector<float> train_params(Backend& be, Config c, int V, int A, const std::string& dir) {
  c.json["train"]["dp_virtual"] = V;
  c.json["train"]["accum"] = A;
  Trainer tr(c, be, std::make_shared<Items28>(), dir);
  tr.init();
  for (int s = 0; s < 3; ++s) tr.step();
  std::vector<float> p(tr.net().num_params());
  be.download(p.data(), tr.net().params(), p.size() * 4);
  return p;
}
}  // namespace

// The same two micro-batch gradients added left to right: 2 virtual ranks == accumulation of 2,
// bit for bit, on the GPU as on the CPU; and close to the CPU's.
TEST(CudaDist, VirtualRanksEqualAccumulation) {
  REQUIRE_CUDA();
  Config c = load_config("fmnist_uvit_tiny");
  c.json["train"]["batch_size"] = 8;
  c.json["dataset"] = {{"cfg", true}, {"p_uncond", 0.1}};
  const fs::path root = fs::temp_directory_path() / "uvit_cuda_dist";
  auto gpu = make_backend("cuda", "fp32");
  auto cpu = make_cpu_backend();
  const auto v = train_params(*gpu, c, 2, 1, (root / "v").string());
  const auto a = train_params(*gpu, c, 1, 2, (root / "a").string());
  EXPECT_EQ(std::memcmp(v.data(), a.data(), v.size() * 4), 0);
  const auto cv = train_params(*cpu, c, 2, 1, (root / "c").string());
  test::compare("dp_virtual=2 params GPU vs CPU", v, cv, 1e-3);
  fs::remove_all(root);
}

#ifdef UVIT_TEST_NCCL
// One rank (an MPI singleton): NCCL's all-to-all, the ordered-sum kernel and the all-gather give
// the sequential sum of 3 slices bit for bit.
TEST(CudaDist, NcclOrderedReductionOneRank) {
  REQUIRE_CUDA();
  if (launched_by_mpi()) GTEST_SKIP() << "started by mpirun";
  auto comm = make_nccl_comm();
  ASSERT_EQ(comm->size(), 1);
  const int k = 3;
  const size_t n = 4096 + 16;
  const std::vector<float> h = test::randv(k * n, 9, -3.f, 3.f);
  float *d = nullptr, *shard = nullptr, *full = nullptr;
  ASSERT_EQ(cudaMalloc(&d, h.size() * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&shard, n * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&full, n * 4), cudaSuccess);
  cudaMemcpy(d, h.data(), h.size() * 4, cudaMemcpyHostToDevice);
  comm->reduce_scatter_ordered(d, k, n, n, n, shard);
  cudaMemcpy(full, shard, n * 4, cudaMemcpyDeviceToDevice);
  comm->allgather_shards(full, n, n);
  std::vector<float> got(n), want(n);
  cudaMemcpy(got.data(), full, n * 4, cudaMemcpyDeviceToHost);
  ordered_sum(h.data(), k, n, n, want.data());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), n * 4), 0);
  cudaFree(d), cudaFree(shard), cudaFree(full);
}
#endif
