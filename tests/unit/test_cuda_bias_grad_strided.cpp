// Backend::bias_grad_strided on CUDA (fp32 and bf16 acts) against the CPU on bias_grad_cases.hpp's
// shapes, in fp32 accuracy (db is fp32 and both see the same act values); the same bits as the
// GPU's bias_grad over the rows copied together, which holds for these cases only (both calls get
// the same chunk plan and fixed-order sums; not in general, docs/gpu.md), and the same bits on a
// second run. Skips without a GPU.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "bias_grad_cases.hpp"
#include "gpu_compare.hpp"
#include "uvit/array.hpp"
#include "uvit/backend.hpp"

using namespace uvit;
using namespace uvit::test;
using VecF = std::vector<float>;

namespace {

// db0 plus the column sums of dy's M rows (ld apart) on `be`, strided (or over the rows copied
// together first: `packed`).
VecF run(Backend& be, const BiasGradCase& c, const VecF& dy_host, const VecF& db0, bool packed) {
  const size_t total = dy_host.size();
  DeviceBuffer d32(be, total * 4), dy(be, total * 4), rows(be, size_t(c.M) * c.N * 4),
      db(be, db0.size() * 4);
  be.upload(d32.f32(), dy_host.data(), total * 4);
  be.to_act(d32.f32(), dy.f32(), total);
  be.upload(db.f32(), db0.data(), db0.size() * 4);
  if (packed) {
    be.copy_act_2d(rows.f32(), c.N, dy.f32(), c.ld, c.M, c.N);
    be.bias_grad(rows.f32(), db.f32(), c.M, c.N);
  } else {
    be.bias_grad_strided(dy.f32(), c.ld, db.f32(), c.M, c.N);
  }
  VecF h(db0.size());
  be.download(h.data(), db.f32(), h.size() * 4);
  return h;
}

}  // namespace

TEST(CudaBiasGradStrided, MatchesTheCpuAndThePackedRows) {
  REQUIRE_CUDA();
  auto cpu = make_cpu_backend();
  for (const char* prec : {"fp32", "bf16"}) {
    auto be = make_backend("cuda", prec);
    for (const BiasGradCase& c : bias_grad_cases()) {
      const std::string tag = std::string(prec) + " M=" + std::to_string(c.M) +
                              " N=" + std::to_string(c.N) + " ld=" + std::to_string(c.ld);
      SCOPED_TRACE(tag);
      VecF dy = randv(size_t(c.M - 1) * c.ld + c.N, 5);
      if (std::string(prec) == "bf16")
        for (float& x : dy) x = bf16_to_float(float_to_bf16(x));  // the same values on the CPU
      const VecF db0 = randv(size_t(c.N), 6, -5.f, 5.f);
      const VecF got = run(*be, c, dy, db0, false);
      compare("bias_grad_strided " + tag, got, run(*cpu, c, dy, db0, false), 1e-5);
      EXPECT_EQ(got, run(*be, c, dy, db0, true)) << "strided and packed rows differ";
      EXPECT_EQ(got, run(*be, c, dy, db0, false)) << "not reproducible";
    }
  }
}
