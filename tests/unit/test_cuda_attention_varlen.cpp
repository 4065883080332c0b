// Backend::attention_varlen_fwd/bwd on CUDA (fp32 and bf16) against the CPU backend: mixed
// lengths (runs of full-length samples, padded samples, a single valid token) with padded rows
// zero. Skips without a GPU.
#ifdef UVIT_HAVE_CUDA
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "cuda_act.hpp"
#include "gpu_compare.hpp"
#include "uvit/backend.hpp"
#include "uvit/error.hpp"

namespace {

using namespace uvit::test;

void check_varlen(bool bf16, int N, int H, int Dh, const std::vector<int32_t>& lens) {
  const int B = int(lens.size()), D = H * Dh;
  std::mt19937 g(N * 31 + Dh);
  const size_t nqkv = size_t(B) * N * 3 * D, nout = size_t(B) * N * D, nlse = size_t(B) * H * N;
  auto qkv = randv(nqkv, g, 2.f);
  auto dout = randv(nout, g, 1.f);
  if (bf16) round_bf16(qkv), round_bf16(dout);
  const float scale = 1.f / std::sqrt(float(Dh));
  auto cpu = uvit::make_cpu_backend();
  std::vector<float> out(nout), lse(nlse), dqkv(nqkv);
  cpu->attention_varlen_fwd(qkv.data(), lens.data(), out.data(), lse.data(), B, N, H, Dh, scale);
  if (bf16) round_bf16(out);  // the GPU backward reads its own bf16 output
  cpu->attention_varlen_bwd(dout.data(), qkv.data(), out.data(), lse.data(), lens.data(),
                            dqkv.data(), B, N, H, Dh, scale);

  auto gpu = uvit::make_backend("cuda", bf16 ? "bf16" : "fp32");
  Dev dq(nqkv * (bf16 ? 2 : 4)), dO(nout * (bf16 ? 2 : 4)), dout_d(nout * (bf16 ? 2 : 4)),
      dl(nlse * 4), dg(nqkv * (bf16 ? 2 : 4));
  upload(dq, qkv, bf16);
  upload(dout_d, dout, bf16);
  upload(dg, std::vector<float>(nqkv, 7.f), bf16);  // padded rows must be overwritten with 0
  gpu->attention_varlen_fwd(static_cast<float*>(dq.p), lens.data(), static_cast<float*>(dO.p),
                            static_cast<float*>(dl.p), B, N, H, Dh, scale);
  const std::string tag = uvit::cat(bf16 ? "bf16" : "fp32", " N=", N, " H=", H, " Dh=", Dh);
  auto got_out = download(dO, nout, bf16);
  expect_close(got_out, out, bf16 ? 1e-2 : 1e-5, "varlen out " + tag);
  expect_close(download(dl, nlse, false), lse, 1e-5, "varlen lse " + tag);
  gpu->attention_varlen_bwd(static_cast<float*>(dout_d.p), static_cast<float*>(dq.p),
                            static_cast<float*>(dO.p), static_cast<float*>(dl.p), lens.data(),
                            static_cast<float*>(dg.p), B, N, H, Dh, scale);
  expect_close(download(dg, nqkv, bf16), dqkv, bf16 ? 3e-2 : 1e-4, "varlen dqkv " + tag);
}

}  // namespace

TEST(CudaAttentionVarlen, MatchesCpu) {
  REQUIRE_CUDA();
  for (bool bf16 : {false, true}) {
    check_varlen(bf16, 9, 2, 32, {8, 9});
    check_varlen(bf16, 65, 3, 64, {65, 65, 40, 1, 65});
    check_varlen(bf16, 256, 4, 72, {200, 256, 17});
  }
}
#endif
