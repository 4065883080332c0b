// Skip-DiT's Skip-Cache (`uvit sample --skip-cache N`, docs/dit.md) on the CUDA backend against
// the CPU backend: a full call copies the deep blocks' input into the cache (a DeviceBuffer sized
// by keep_cache, also from the memory plan), a cached call runs the first and last 4 blocks from
// it, and a call at t <= 20 downloads t to empty the cache. No GPU test ran it before (CudaModel
// runs skip_dit without the cache). Same bounds as CudaModel's outputs: fp32 1e-5, bf16 3e-2.
// Skipped without a GPU.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "model_compare.hpp"
#include "uvit/backend.hpp"
#include "uvit/network.hpp"

using namespace uvit;
using namespace uvit::test;

namespace {

// Depth 8 = twice the cached branch: blocks 4..7 are skipped by a cached call.
const char* kSkipDit =
    R"({"name": "skip_dit_cache", "nnet": {"name": "skip_dit", "input_size": 8, "patch_size": 2,
        "in_channels": 4, "hidden_size": 64, "depth": 8, "num_heads": 2, "num_classes": 5,
        "learn_sigma": false}})";

constexpr int kB = 3;
// With the cache every 3 calls: full, cached, cached, full, cached at t = 15 (then emptied, as
// t <= 20), and full (the emptied cache; cached otherwise).
const float kT[] = {900.f, 700.f, 500.f, 300.f, 15.f, 10.f};

// The outputs of the calls above (every = 0: the plain network).
std::vector<std::vector<float>> run_calls(Backend& be, int every) {
  auto net = make_network(config_from(kSkipDit), be);
  net->init_random(5);
  {  // non-zero adaLN-Zero layers, so that every block matters
    std::vector<float> p(net->num_params());
    be.download(p.data(), net->params(), p.size() * 4);
    Philox r(11);
    for (size_t i = 0; i < p.size(); ++i) p[i] += 0.02f * r.normal(i);
    be.upload(net->params(), p.data(), p.size() * 4);
  }
  net->reserve(kB, false);  // the memory plan (keep_cache ahead of the first full call)
  net->set_skip_cache(every);
  const NetSpec& n = net->spec();
  DeviceBuffer dx(be, kB * n.in_numel() * 4), dt(be, kB * 4), dy(be, kB * 4),
      out(be, kB * n.out_numel() * 4);
  const std::vector<int32_t> y = {0, 3, 1};
  be.upload(dy.as(), y.data(), y.size() * 4);
  std::vector<std::vector<float>> outs;
  Philox rng(3);
  for (size_t c = 0; c < std::size(kT); ++c) {
    std::vector<float> x(kB * n.in_numel()), t(kB, kT[c]);
    rng.fill_normal(x.data(), x.size(), c * x.size());
    be.upload(dx.as(), x.data(), x.size() * 4);
    be.upload(dt.as(), t.data(), t.size() * 4);
    net->forward(dx.f32(), dt.f32(), dy.as<int32_t>(), nullptr, out.f32(), kB, false);
    outs.emplace_back(kB * n.out_numel());
    be.download(outs.back().data(), out.f32(), outs.back().size() * 4);
  }
  return outs;
}

}  // namespace

TEST(CudaSkipCache, CachedCallsMatchCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  auto cpu = make_cpu_backend();
  const auto ref = run_calls(*cpu, 3), plain = run_calls(*cpu, 0);
  // The cache really ran: a cached call differs from the plain network, a full one does not.
  for (int c : {1, 2, 4}) ASSERT_GT(rel(ref[c], plain[c]), 1e-4) << "call " << c;
  for (int c : {0, 3, 5}) ASSERT_LE(rel(ref[c], plain[c]), 1e-6) << "call " << c;
  for (const char* prec : {"fp32", "bf16"}) {
    SCOPED_TRACE(prec);
    auto gpu = make_backend("cuda", prec);
    const auto got = run_calls(*gpu, 3);
    const bool bf = std::string(prec) == "bf16";
    for (size_t c = 0; c < ref.size(); ++c) {
      const double e = rel(got[c], ref[c]);
      std::printf("[skip-cache %s] call %zu (t %.0f): %.3g from the CPU\n", prec, c, kT[c], e);
      EXPECT_LE(e, bf ? 3e-2 : 1e-5) << "call " << c;
    }
  }
}
