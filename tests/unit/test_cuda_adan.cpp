// The CUDA Adan kernel against the CPU one (docs/mdt_diffusion.md): same step scalars, same
// per-element operations (backend/adan_update.hpp), aligned (float4) and unaligned pointers,
// steps 1 (zero gradient difference) and later ones, both weight-decay forms. Skips without a GPU.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "gpu_compare.hpp"
#include "uvit/backend.hpp"

namespace {

using uvit::test::compare;
using uvit::test::randv;
using VecF = std::vector<float>;

TEST(CudaKernels, AdanMatchesCpu) {
  REQUIRE_CUDA();
  auto gpu = uvit::make_backend("cuda", "fp32"), cpu = uvit::make_cpu_backend();
  std::vector<void*> bufs;
  auto up = [&](const VecF& h, size_t off) {
    float* p = static_cast<float*>(gpu->alloc_bytes((h.size() + off) * 4)) + off;
    bufs.push_back(p - off);
    gpu->upload(p, h.data(), h.size() * 4);
    return p;
  };
  auto down = [&](const float* p, size_t n) {
    VecF h(n);
    gpu->download(h.data(), p, n * 4);
    return h;
  };
  for (size_t n : {size_t{1}, size_t{1001}, size_t{65536}})
    for (size_t off : {size_t{0}, size_t{1}})
      for (long step : {1L, 2L, 5000L})
        for (bool no_prox : {false, true}) {
          const std::string tag = "n=" + std::to_string(n) + " off=" + std::to_string(off) +
                                  " step=" + std::to_string(step) + (no_prox ? " no_prox" : "");
          uvit::AdanHyper h;
          h.lr = 3e-4f, h.weight_decay = 0.02f, h.no_prox = no_prox;
          VecF p = randv(n, 50), g = randv(n, 51), m = randv(n, 52, -0.1f, 0.1f),
               d = randv(n, 53, -0.1f, 0.1f), v = randv(n, 54, 0.f, 0.01f), gp = randv(n, 55);
          float *dp = up(p, off), *dg = up(g, off), *dm = up(m, off), *dd = up(d, off),
                *dv = up(v, off), *dgp = up(gp, off);
          cpu->adan(p.data(), g.data(), m.data(), d.data(), v.data(), gp.data(), n, h, step);
          gpu->adan(dp, dg, dm, dd, dv, dgp, n, h, step);
          compare("adan p " + tag, down(dp, n), p, 1e-6);
          compare("adan m " + tag, down(dm, n), m, 1e-6);
          compare("adan d " + tag, down(dd, n), d, 1e-6);
          compare("adan n " + tag, down(dv, n), v, 1e-6);
          compare("adan pre_grad " + tag, down(dgp, n), gp, 0);
        }
  for (void* b : bufs) gpu->free_bytes(b);
}

}  // namespace
