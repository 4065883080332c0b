// The CPU bf16 GEMMs' kept blocked weights (docs/cpu_bf16.md, "Kept blocked weights"): on AMX a
// weight reordered into oneDNN's blocked layout is kept until the act copy of the parameters is
// written again (Backend::params_to_act) or freed. These tests fail if a stale blocked copy is
// ever used: every product after a write, a free, or an optimizer step must equal, bit for bit,
// the same product computed without any kept copy (the kept copy and the per-call reorder are the
// same reorder into the same layout, read by the same primitive). Skipped where the CPU has no
// bf16 units; on a bf16 CPU without AMX nothing is kept and they check the plain path.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "gpu_compare.hpp"
#include "kept_weights_checks.hpp"
#include "model_compare.hpp"
#include "uvit/backend.hpp"

using namespace uvit;
using namespace uvit::test;
using VecF = std::vector<float>;

namespace {

// bf16 values (as uint16) of fp32 ones, the rounding of to_act.
std::vector<uint16_t> bf16_of(const VecF& v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = float_to_bf16(v[i]);
  return h;
}

// y = x w^T (bf16 C) with w read at `w` (act memory), as the forward linears call it.
std::vector<uint16_t> product(Backend& be, const std::vector<uint16_t>& x, const void* w, int M,
                              int N, int K) {
  std::vector<uint16_t> y(size_t(M) * N, 0);
  be.gemm(false, true, M, N, K, 1.f, reinterpret_cast<const float*>(x.data()), K,
          static_cast<const float*>(w), K, 0.f, reinterpret_cast<float*>(y.data()), N);
  return y;
}

}  // namespace

// Backend level: a weight buffer registered by params_to_act, multiplied three times (so a copy is
// kept), rewritten, multiplied again; then freed and its memory reused for other data.
TEST(CpuBf16KeptWeights, ProductsRereadWeightsAfterEveryWriteAndFree) {
  REQUIRE_CPU_BF16();
  auto be = make_backend("cpu", "bf16");
  const int M = 96, N = 384, K = 256;
  const std::vector<uint16_t> x = bf16_of(randv(size_t(M) * K, 1));
  VecF p = randv(size_t(N) * K, 2);
  void* w = be->alloc_bytes(p.size() * 2);
  be->params_to_act(p.data(), static_cast<float*>(w), p.size());
  // The reference: the same bf16 weights at an address no params_to_act registered.
  std::vector<uint16_t> plain = bf16_of(p);
  const std::vector<uint16_t> ref1 = product(*be, x, plain.data(), M, N, K);
  const auto uses = [&] { return product(*be, x, w, M, N, K); };
  expect_three_uses(uses, ref1, "of the first weights");
  expect_kept_copy(gemm_blocks_weights(), p.size() * 2, N, K, "bf16");  // on AMX

  // A write through params_to_act: the next product reads the new weights.
  for (size_t i = 0; i < p.size(); i += 7) p[i] = -2.f * p[i] + 0.25f;
  be->params_to_act(p.data(), static_cast<float*>(w), p.size());
  EXPECT_EQ(gemm_kept_weight_bytes(), 0u) << "a write drops the blocked copies made from it";
  plain = bf16_of(p);
  const std::vector<uint16_t> ref2 = product(*be, x, plain.data(), M, N, K);
  ASSERT_NE(ref2, ref1);
  expect_three_uses(uses, ref2, "after the write");

  // Freed: whatever is allocated there next is not a weight, however often it is multiplied.
  be->free_bytes(w);
  EXPECT_EQ(gemm_kept_weight_bytes(), 0u) << "a free drops the blocked copies made from it";
  void* a = be->alloc_bytes(p.size() * 2);
  for (int round = 0; round < 3; ++round) {
    const VecF q = randv(p.size(), 10 + round);
    be->to_act(q.data(), static_cast<float*>(a), q.size());  // an activation: not registered
    plain = bf16_of(q);
    const std::vector<uint16_t> ref = product(*be, x, plain.data(), M, N, K);
    EXPECT_EQ(product(*be, x, a, M, N, K), ref) << "activation data, round " << round;
    EXPECT_EQ(product(*be, x, a, M, N, K), ref) << "activation data again, round " << round;
  }
  EXPECT_EQ(gemm_kept_weight_bytes(), 0u);
  be->free_bytes(a);
}

namespace {

// One network on the bf16 backend with fixed inputs: inference forwards, training steps (forward,
// backward, AdamW) and direct weight edits, each result downloaded.
struct Net {
  Backend& be;
  std::unique_ptr<Network> net;
  int B = 2;
  DeviceBuffer x, t, y, dout, out, m, v;
  long step = 0;

  Net(Backend& b, const Config& c) : be(b), net(make_network(c, b)) {
    net->init_random(5);
    const NetSpec& n = net->spec();
    Philox rng(3);
    VecF hx(B * n.in_numel()), ht(B), hg(B * n.out_numel());
    rng.fill_normal(hx.data(), hx.size());
    rng.fill_normal(hg.data(), hg.size(), hx.size());
    for (int i = 0; i < B; ++i) ht[i] = 999.f * rng.uniform(7 * hx.size() + i);
    std::vector<int32_t> hy = {1, 7};
    auto up = [&](const void* src, size_t bytes) {
      DeviceBuffer d(be, bytes);
      be.upload(d.as(), src, bytes);
      return d;
    };
    x = up(hx.data(), hx.size() * 4);
    t = up(ht.data(), ht.size() * 4);
    y = up(hy.data(), hy.size() * 4);
    dout = up(hg.data(), hg.size() * 4);
    out = DeviceBuffer(be, hg.size() * 4);
    const size_t P = net->num_params();
    m = DeviceBuffer(be, P * 4);
    v = DeviceBuffer(be, P * 4);
    be.fill(m.f32(), 0.f, P);
    be.fill(v.f32(), 0.f, P);
  }
  VecF download(const float* p, size_t n) {
    VecF h(n);
    be.download(h.data(), p, n * 4);
    return h;
  }
  VecF forward(bool train = false) {
    net->forward(x.f32(), t.f32(), y.as<int32_t>(), nullptr, out.f32(), B, train);
    return download(out.f32(), B * net->spec().out_numel());
  }
  // Returns the step's output and gradients; the parameters are then updated.
  std::pair<VecF, VecF> train_step() {
    net->zero_grad();
    VecF o = forward(true);
    net->backward(dout.f32());
    VecF g = download(net->grads(), net->num_params());
    be.adamw(net->params(), net->grads(), m.f32(), v.f32(), net->num_params(), 1e-2f, 0.9f, 0.999f,
             1e-8f, 0.03f, ++step);
    return {o, g};
  }
};

}  // namespace

// Network level: net A runs two inference forwards before each training step (so on AMX its
// step's forward reads kept blocked weights), net B only the steps; every step's output and
// gradients, the parameters, and forwards after a direct weight edit must match bit for bit.
TEST(CpuBf16KeptWeights, TrainingStepsAndEditsMatchTheUnkeptPath) {
  REQUIRE_CPU_BF16();
  const Config c = config_from(kConfigs[0]);  // U-ViT, class-conditional, conv head
  auto be = make_backend("cpu", "bf16");
  Net a(*be, c), b(*be, c);
  ASSERT_EQ(a.forward(), b.forward());
  for (int s = 1; s <= 2; ++s) {
    a.forward();
    a.forward();
    if (gemm_blocks_weights()) {
      EXPECT_GT(gemm_kept_weight_bytes(), 0u) << "step " << s;
    }
    const auto [oa, ga] = a.train_step();
    const auto [ob, gb] = b.train_step();
    EXPECT_EQ(oa, ob) << "training step " << s << ": output";
    EXPECT_EQ(ga, gb) << "training step " << s << ": gradients";
  }
  EXPECT_EQ(a.download(a.net->params(), a.net->num_params()),
            b.download(b.net->params(), b.net->num_params()));
  // A direct edit of one GEMM weight through params() (as a load or the EMA copy writes), after
  // two forwards that keep A's blocked weights.
  a.forward();
  EXPECT_EQ(a.forward(), b.forward());
  const ParamEntry& e = a.net->table().at("in_blocks.0.attn.qkv.weight");
  for (Net* n : {&a, &b}) {
    VecF w = n->download(n->net->params() + e.offset, e.numel);
    for (auto& f : w) f = 0.5f - f;
    n->be.upload(n->net->params() + e.offset, w.data(), w.size() * 4);
  }
  const VecF fa = a.forward(), fb = b.forward();
  EXPECT_EQ(fa, fb) << "forward after editing in_blocks.0.attn.qkv.weight";
  EXPECT_EQ(a.forward(), fb) << "second forward after the edit";
}
