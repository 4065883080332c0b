// The CPU fp32 GEMMs' kept blocked weights (docs/kernels.md, "Kept blocked weights"): a network's
// fp32 weight reordered into oneDNN's blocked layout is kept from its second use until the
// parameters are written again (every writer marks them, Network::params_written; the next forward
// tells the backend, Backend::params_to_act) or freed. These tests fail if a stale blocked copy is
// ever read: every product after a write, a load, a training step (the weights and the EMA), or a
// free must equal, bit for bit, the same computation without any kept copy (a fresh network's
// first forward, or a weight at an unregistered address: the same reorder into the same layout,
// read by the same primitive). Where oneDNN's fp32 matmul takes B plain (no AVX-512) nothing is
// kept and they check the plain path.
#include <gtest/gtest.h>
#include <oneapi/dnnl/dnnl.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "gpu_compare.hpp"
#include "kept_weights_checks.hpp"
#include "model_compare.hpp"
#include "temp_dir.hpp"
#include "uvit/backend.hpp"

using namespace uvit;
using namespace uvit::test;
using VecF = std::vector<float>;

namespace {

// oneDNN's fp32 brgemm matmul, which takes B blocked (reordered, so kept), needs AVX-512.
bool fp32_b_blocked() {
  const unsigned isa = static_cast<unsigned>(dnnl_get_effective_cpu_isa());
  const unsigned want = static_cast<unsigned>(dnnl_cpu_isa_avx512_core);
  return (isa & want) == want;
}

// y = x w^T with w read at `w`, as the forward linears call it.
VecF product(Backend& be, const VecF& x, const float* w, int M, int N, int K) {
  VecF y(size_t(M) * N, 0.f);
  be.gemm(false, true, M, N, K, 1.f, x.data(), K, w, K, 0.f, y.data(), N);
  return y;
}

VecF download(Backend& be, const float* p, size_t n) {
  VecF h(n);
  be.download(h.data(), p, n * 4);
  return h;
}

// Fixed inputs for a class-conditional network's inference forward.
struct Inputs {
  int B = 2;
  DeviceBuffer x, t, y, out;
  Inputs(Backend& be, const NetSpec& n) {
    Philox rng(3);
    VecF hx(B * n.in_numel()), ht(B);
    rng.fill_normal(hx.data(), hx.size());
    for (int i = 0; i < B; ++i) ht[i] = 999.f * rng.uniform(7 * hx.size() + i);
    const std::vector<int32_t> hy = {1, 7};
    auto up = [&](const void* src, size_t bytes) {
      DeviceBuffer d(be, bytes);
      be.upload(d.as(), src, bytes);
      return d;
    };
    x = up(hx.data(), hx.size() * 4);
    t = up(ht.data(), ht.size() * 4);
    y = up(hy.data(), hy.size() * 4);
    out = DeviceBuffer(be, B * n.out_numel() * 4);
  }
  VecF forward(Network& net) {
    net.forward(x.f32(), t.f32(), y.as<int32_t>(), nullptr, out.f32(), B);
    return download(net.backend(), out.f32(), B * net.spec().out_numel());
  }
};

// Random weights for every tensor (DiT's official init zeroes the adaLN and the output layer, so
// its forward would be all zeros whatever the other weights), written through params().
void randomize(Network& net, unsigned seed) {
  const VecF p = randv(net.num_params(), seed, -0.05f, 0.05f);
  net.backend().upload(net.params(), p.data(), p.size() * 4);
}

// The unkept reference: a fresh network holding `net`'s weights, one forward (a first use of each
// weight reorders it per call and keeps nothing).
VecF fresh_forward(Backend& be, const Config& c, Network& net, Inputs& in) {
  auto f = make_network(c, be);
  f->load(net.export_weights(), "the weights of the network under test");
  return in.forward(*f);
}

}  // namespace

// Backend level: an fp32 weight buffer registered by params_to_act (src == dst: the parameters are
// their own act copy), multiplied three times (so a copy is kept), rewritten, multiplied again;
// then freed and its memory reused for other data.
TEST(CpuFp32KeptWeights, ProductsRereadWeightsAfterEveryWriteAndFree) {
  auto be = make_backend("cpu", "fp32");
  const int M = 96, N = 384, K = 256;
  const VecF x = randv(size_t(M) * K, 1);
  VecF p = randv(size_t(N) * K, 2);
  auto* w = static_cast<float*>(be->alloc_bytes(p.size() * 4));
  be->upload(w, p.data(), p.size() * 4);
  be->params_to_act(w, w, p.size());
  const VecF ref1 = product(*be, x, p.data(), M, N, K);  // p: an unregistered address
  const auto uses = [&] { return product(*be, x, w, M, N, K); };
  expect_three_uses(uses, ref1, "of the first weights");
  expect_kept_copy(fp32_b_blocked(), p.size() * 4, N, K, "fp32");

  // A write, then params_to_act (as the next forward after any write calls it).
  for (size_t i = 0; i < p.size(); i += 7) p[i] = -2.f * p[i] + 0.25f;
  be->upload(w, p.data(), p.size() * 4);
  be->params_to_act(w, w, p.size());
  EXPECT_EQ(gemm_kept_weight_bytes(), 0u) << "a write drops the blocked copies made from it";
  const VecF ref2 = product(*be, x, p.data(), M, N, K);
  ASSERT_NE(ref2, ref1);
  expect_three_uses(uses, ref2, "after the write");

  // Freed: whatever is allocated there next is not a weight, however often it is multiplied.
  be->free_bytes(w);
  EXPECT_EQ(gemm_kept_weight_bytes(), 0u) << "a free drops the blocked copies made from it";
  auto* a = static_cast<float*>(be->alloc_bytes(p.size() * 4));
  for (int round = 0; round < 3; ++round) {
    const VecF q = randv(p.size(), 10 + round);
    be->upload(a, q.data(), q.size() * 4);  // an activation: not registered
    const VecF ref = product(*be, x, q.data(), M, N, K);
    EXPECT_EQ(product(*be, x, a, M, N, K), ref) << "activation data, round " << round;
    EXPECT_EQ(product(*be, x, a, M, N, K), ref) << "activation data again, round " << round;
  }
  EXPECT_EQ(gemm_kept_weight_bytes(), 0u);
  be->free_bytes(a);
}

// The default's rule (gemm.cpp, kKeptRows): copies are kept only while a network's products have
// at most 1536 rows (batch x tokens). One product with more drops the copies of every weight of
// that network, and none is made again before the next write; the products' bits never change.
// Main kept a copy at any M.
TEST(CpuFp32KeptWeights, NoCopiesOnceANetworksProductsHaveManyRows) {
  if (!fp32_b_blocked()) GTEST_SKIP() << "oneDNN takes the fp32 B plain here: nothing is kept";
  auto be = make_backend("cpu", "fp32");
  const int small = 96, large = 4096, N = 384, K = 256;
  const size_t n = size_t(N) * K;
  const VecF xs = randv(size_t(small) * K, 1), xl = randv(size_t(large) * K, 3);
  const VecF p = randv(2 * n, 2);  // two weights of one network's parameters
  auto* w = static_cast<float*>(be->alloc_bytes(p.size() * 4));
  be->upload(w, p.data(), p.size() * 4);
  be->params_to_act(w, w, p.size());
  const VecF ref_a = product(*be, xs, p.data(), small, N, K);  // unregistered addresses
  const VecF ref_b = product(*be, xs, p.data() + n, small, N, K);
  const VecF ref_large = product(*be, xl, p.data(), large, N, K);
  auto small_products = [&](const char* when) {
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(product(*be, xs, w, small, N, K), ref_a) << when << ", use " << i + 1;
      EXPECT_EQ(product(*be, xs, w + n, small, N, K), ref_b) << when << ", use " << i + 1;
    }
  };
  small_products("96 rows");
  EXPECT_GE(gemm_kept_weight_bytes(), 2 * n * 4) << "products of 96 rows keep both weights";
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(product(*be, xl, w, large, N, K), ref_large) << "4096 rows, use " << i + 1;
  EXPECT_EQ(gemm_kept_weight_bytes(), 0u) << "a product of 4096 rows drops both weights' copies";
  small_products("96 rows after 4096");
  EXPECT_EQ(gemm_kept_weight_bytes(), 0u) << "no copy is made again before the next write";
  be->params_to_act(w, w, p.size());  // a write (of the same values)
  small_products("96 rows after a write");
  EXPECT_GE(gemm_kept_weight_bytes(), 2 * n * 4) << "after a write small products keep copies";
  be->free_bytes(w);
  EXPECT_EQ(gemm_kept_weight_bytes(), 0u);
}

// A training run's sampling between steps: the trained network and its EMA run several inference
// forwards (so their blocked weights are kept), then a step rewrites both (AdamW, the EMA update);
// every forward after it must equal a fresh network's with the new weights. Without the
// invalidation the forwards after a step read the blocked copies of the weights before it.
TEST(CpuFp32KeptWeights, TrainingStepsBetweenSamplingsReadTheNewWeights) {
  const Config c = train_config();  // kConfigs[0]: U-ViT, class-conditional, conv head
  auto be = make_backend("cpu", "fp32");
  const uvit_test::TempDir dir("uvit_fp32_kept");
  Trainer tr(c, *be, std::make_shared<NoiseDataset>(), dir / "run");
  tr.init();
  Inputs in(*be, tr.net().spec());
  for (int s = 1; s <= 3; ++s) {
    for (Network* n : {&tr.net(), &tr.ema_net()}) {
      const char* which = n == &tr.net() ? "trained network" : "EMA";
      const VecF want = fresh_forward(*be, c, *n, in);
      for (int i = 0; i < 3; ++i)
        EXPECT_EQ(in.forward(*n), want)
            << which << ", forward " << i + 1 << " after step " << s - 1;
    }
    if (fp32_b_blocked()) {
      EXPECT_GT(gemm_kept_weight_bytes(), 0u) << "after step " << s - 1;
    }
    tr.step();
  }
}

// Loads, re-initialisation and direct edits through params() between forwards; then a network
// freed and another made (its parameters may reuse the memory) with other weights. U-ViT and DiT
// (adaLN modulation: products of a few rows with big weights; fused-bias linears).
class CpuFp32KeptWeightsNet : public testing::TestWithParam<int> {};

TEST_P(CpuFp32KeptWeightsNet, LoadsEditsAndFreesReadTheNewWeights) {
  const Config c = config_from(kConfigs[GetParam()]);
  auto be = make_backend("cpu", "fp32");
  auto a = make_network(c, *be), b = make_network(c, *be);
  randomize(*a, 5);
  randomize(*b, 6);
  Inputs in(*be, a->spec());
  const VecF fa = in.forward(*a), fb = in.forward(*b);
  ASSERT_NE(fa, fb);
  auto twice = [&](Network& n, const VecF& want, const std::string& what) {
    EXPECT_EQ(in.forward(n), want) << what;
    EXPECT_EQ(in.forward(n), want) << what << ", again";
    EXPECT_EQ(in.forward(n), want) << what << ", a third time";
  };
  twice(*a, fa, "A's own weights");
  if (fp32_b_blocked()) {
    EXPECT_GT(gemm_kept_weight_bytes(), 0u);
  }
  a->load(b->export_weights(), "B's weights");
  twice(*a, fb, "after loading B's weights");
  a->init_random(5);
  const VecF fi = fresh_forward(*be, c, *a, in);
  ASSERT_NE(fi, fb);
  twice(*a, fi, "after init_random");
  randomize(*a, 5);
  twice(*a, fa, "after writing the first weights again");

  // One GEMM weight edited in place through params() (as a load or the EMA copy writes).
  const ParamEntry& e =
      a->table().at(GetParam() == 0 ? "in_blocks.0.attn.qkv.weight" : "blocks.0.attn.qkv.weight");
  VecF w = download(*be, a->params() + e.offset, e.numel);
  for (auto& f : w) f = 0.5f - f;
  be->upload(a->params() + e.offset, w.data(), w.size() * 4);
  const VecF edited = fresh_forward(*be, c, *a, in);
  ASSERT_NE(edited, fa);
  twice(*a, edited, "after editing " + e.name);

  a.reset();  // its parameters' memory is free for the next network's
  auto d = make_network(c, *be);
  randomize(*d, 7);
  const VecF fd = fresh_forward(*be, c, *d, in);
  ASSERT_NE(fd, fa);
  twice(*d, fd, "a network made after another was freed");
}

INSTANTIATE_TEST_SUITE_P(UViTAndDiT, CpuFp32KeptWeightsNet, testing::Values(0, 3));
