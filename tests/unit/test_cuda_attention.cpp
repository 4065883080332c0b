// The CUDA attention context against the CPU backend: the unfused batched-GEMM path (fp32 and
// bf16, forward and backward) and the fused (wmma) and flash bf16 forwards, at U-ViT shapes (N
// 65..258, Dh 64/72) and awkward ones (Dh 32, odd Dh, tiny N, N not a multiple of the 64-key tile,
// misaligned pointers), and the flash backward (vs the CPU, and bit-identical run to run).
// cuDNN's SDPA (UVIT_ATTENTION=cudnn, attention_cudnn.hpp) is held to the same bounds, both through
// the context (with its fallback) and alone ("cudnn-only": a call cuDNN turns down fails).
// CudaAttentionTiming prints forward and backward timings (no assertion on them).
#ifdef UVIT_HAVE_CUDA
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <vector>

#include "backend/cuda/attention.hpp"
#include "backend/cuda/attention_cudnn.hpp"
#include "cuda_act.hpp"
#include "gpu_compare.hpp"
#include "uvit/array.hpp"
#include "uvit/backend.hpp"
#include "uvit/error.hpp"

namespace {

using namespace uvit::test;  // Dev, upload/download, randv, round_bf16, expect_close

struct Shape {
  int B, N, H, Dh;
};

const Shape kShapes[] = {{2, 65, 8, 64}, {1, 258, 3, 72}, {3, 17, 2, 32},
                         {2, 33, 2, 33}, {1, 130, 4, 40}, {2, 1, 2, 16}};

// cuDNN's SDPA alone, as an AttentionContext: a call it turns down fails the test (strict) or is
// only remembered (the timing test, which then skips the row).
class CudnnOnly final : public uvit::cuda::AttentionContext {
 public:
  explicit CudnnOnly(bool strict) : strict_(strict) {}
  void forward(const void* qkv, void* out, float* lse, int B, int N, int H, int Dh,
               float scale) override {
    expect(dnn_->forward(qkv, out, lse, B, N, H, Dh, scale), "forward", B, N, H, Dh);
  }
  void backward(const void* dout, const void* qkv, const void* out, const float* lse, void* dqkv,
                int B, int N, int H, int Dh, float scale) override {
    expect(dnn_->backward(dout, qkv, out, lse, dqkv, B, N, H, Dh, scale), "backward", B, N, H, Dh);
  }
  bool declined() const { return declined_; }

 private:
  void expect(bool ran, const char* what, int B, int N, int H, int Dh) {
    declined_ = declined_ || !ran;
    if (strict_) {
      EXPECT_TRUE(ran) << "cuDNN turned down the " << what << " B=" << B << " N=" << N << " H=" << H
                       << " Dh=" << Dh;
    }
  }
  std::unique_ptr<uvit::cuda::CudnnAttention> dnn_ = uvit::cuda::make_cudnn_attention(0);
  bool strict_, declined_ = false;
};

bool have_cudnn_sdpa() { return uvit::cuda::make_cudnn_attention(0) != nullptr; }

// Sets UVIT_ATTENTION for the context's construction (the context reads it once); "cudnn-only"
// is cuDNN's SDPA without the fallback.
std::unique_ptr<uvit::cuda::AttentionContext> make_ctx(bool bf16, const char* mode) {
  if (mode && std::string(mode) == "cudnn-only") return std::make_unique<CudnnOnly>(true);
  if (mode)
    setenv("UVIT_ATTENTION", mode, 1);
  else
    unsetenv("UVIT_ATTENTION");
  auto ctx = uvit::cuda::make_attention_context(0, bf16);
  unsetenv("UVIT_ATTENTION");
  return ctx;
}

std::string name(const char* what, bool bf16, const char* mode, const Shape& s) {
  return uvit::cat(what, " ", bf16 ? "bf16" : "fp32", mode ? uvit::cat(" ", mode) : "", " B=", s.B,
                   " N=", s.N, " H=", s.H, " Dh=", s.Dh);
}

// Forward: out and lse against the CPU (inputs rounded to bf16 first in bf16 mode). misalign > 0
// offsets the device qkv and out by that many elements (the kernels' unaligned load/store paths).
void check_forward(bool bf16, const char* mode, const Shape& s, bool with_lse, int misalign = 0) {
  std::mt19937 g(s.B * 1000 + s.N * 10 + s.Dh);
  const int D = s.H * s.Dh;
  const size_t nqkv = size_t(s.B) * s.N * 3 * D, nout = size_t(s.B) * s.N * D,
               nlse = size_t(s.B) * s.H * s.N;
  auto qkv = randv(nqkv, g, 2.f);  // peaky enough softmaxes to matter
  if (bf16) round_bf16(qkv);
  const float scale = 1.f / std::sqrt(float(s.Dh));
  auto cpu = uvit::make_cpu_backend();
  std::vector<float> out(nout), lse(nlse);
  cpu->attention_fwd(qkv.data(), out.data(), lse.data(), s.B, s.N, s.H, s.Dh, scale);

  const size_t e = bf16 ? 2 : 4;
  if (misalign > 0) {
    Dev dq((nqkv + misalign) * e), dout((nout + misalign) * e), dl(nlse * 4);
    std::vector<float> q0(misalign, 0.f);
    q0.insert(q0.end(), qkv.begin(), qkv.end());
    upload(dq, q0, bf16);
    auto ctx = make_ctx(bf16, mode);
    char* qp = static_cast<char*>(dq.p) + misalign * e;
    char* op = static_cast<char*>(dout.p) + misalign * e;
    ctx->forward(qp, op, with_lse ? static_cast<float*>(dl.p) : nullptr, s.B, s.N, s.H, s.Dh,
                 scale);
    auto got = download(dout, nout + misalign, bf16);
    got.erase(got.begin(), got.begin() + misalign);
    expect_close(got, out, bf16 ? 1e-2 : 1e-5,
                 uvit::cat(name("fwd out", bf16, mode, s), " misaligned ", misalign));
    if (with_lse)
      expect_close(download(dl, nlse, false), lse, 1e-5, name("fwd lse", bf16, mode, s));
    return;
  }
  Dev dq(nqkv * e), dout(nout * e), dl(nlse * 4);
  upload(dq, qkv, bf16);
  auto ctx = make_ctx(bf16, mode);
  ctx->forward(dq.p, dout.p, with_lse ? static_cast<float*>(dl.p) : nullptr, s.B, s.N, s.H, s.Dh,
               scale);
  expect_close(download(dout, nout, bf16), out, bf16 ? 1e-2 : 1e-5, name("fwd out", bf16, mode, s));
  if (with_lse) expect_close(download(dl, nlse, false), lse, 1e-5, name("fwd lse", bf16, mode, s));
}

// Backward with the same (CPU) out and lse on both sides, so only the backward is compared.
// mode: UVIT_ATTENTION (nullptr: default). split: compare dq, dk and dv separately (each against
// its own max|ref|) with tolerance tol; otherwise the whole dqkv (1e-5 fp32, 1e-2 bf16).
// misalign > 0 offsets every device tensor by that many elements (scalar load/store paths).
void check_backward(bool bf16, const Shape& s, const char* mode = nullptr, bool split = false,
                    double tol = 0, int misalign = 0) {
  std::mt19937 g(s.B * 77 + s.N * 3 + s.Dh);
  const int D = s.H * s.Dh;
  const size_t nqkv = size_t(s.B) * s.N * 3 * D, nout = size_t(s.B) * s.N * D,
               nlse = size_t(s.B) * s.H * s.N;
  auto qkv = randv(nqkv, g, 2.f), dout = randv(nout, g, 1.f);
  if (bf16) round_bf16(qkv), round_bf16(dout);
  const float scale = 1.f / std::sqrt(float(s.Dh));
  auto cpu = uvit::make_cpu_backend();
  std::vector<float> out(nout), lse(nlse), dqkv(nqkv, 123.f);
  cpu->attention_fwd(qkv.data(), out.data(), lse.data(), s.B, s.N, s.H, s.Dh, scale);
  if (bf16) round_bf16(out);
  cpu->attention_bwd(dout.data(), qkv.data(), out.data(), lse.data(), dqkv.data(), s.B, s.N, s.H,
                     s.Dh, scale);

  const size_t e = bf16 ? 2 : 4, m = size_t(misalign);
  Dev dq((nqkv + m) * e), ddo((nout + m) * e), dO((nout + m) * e), dl(nlse * 4),
      ddq((nqkv + m) * e);
  auto pad = [m](const std::vector<float>& v) {
    std::vector<float> r(m, 0.f);
    r.insert(r.end(), v.begin(), v.end());
    return r;
  };
  upload(dq, pad(qkv), bf16);
  upload(ddo, pad(dout), bf16);
  upload(dO, pad(out), bf16);
  upload(dl, lse, false);
  upload(ddq, std::vector<float>(nqkv + m, 123.f), bf16);  // must be overwritten
  auto at = [&](const Dev& d) { return static_cast<char*>(d.p) + m * e; };
  auto ctx = make_ctx(bf16, mode);
  ctx->backward(at(ddo), at(dq), at(dO), static_cast<const float*>(dl.p), at(ddq), s.B, s.N, s.H,
                s.Dh, scale);
  auto got = download(ddq, nqkv + m, bf16);
  got.erase(got.begin(), got.begin() + m);
  const std::string what = uvit::cat(name("bwd", bf16, mode, s), misalign ? " misaligned" : "");
  if (!split) {
    expect_close(got, dqkv, bf16 ? 1e-2 : 1e-5, uvit::cat(what, " dqkv"));
    return;
  }
  // The floor: dq and dk vanish where a softmax is one-hot (N = 1); there they are compared
  // against 1% of the largest gradient.
  double mx = 0;
  for (float x : dqkv) mx = std::max(mx, double(std::fabs(x)));
  const char* parts[] = {"dq", "dk", "dv"};
  for (int k = 0; k < 3; ++k) {  // columns [k*D, (k+1)*D) of every row
    std::vector<float> gp, rp;
    for (size_t row = 0; row < size_t(s.B) * s.N; ++row)
      for (int c = 0; c < D; ++c) {
        gp.push_back(got[row * 3 * D + size_t(k) * D + c]);
        rp.push_back(dqkv[row * 3 * D + size_t(k) * D + c]);
      }
    expect_close(gp, rp, tol, uvit::cat(what, " ", parts[k]), 1e-2 * mx);
  }
}

}  // namespace

TEST(CudaAttention, ForwardFp32MatchesCpu) {
  if (!uvit::cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  for (const Shape& s : kShapes) {
    check_forward(false, nullptr, s, true);
    check_forward(false, nullptr, s, false);
  }
}

// The bf16 forward implementations (UVIT_ATTENTION values); nullptr is the default (flash).
const char* const kBf16Impls[] = {"unfused", "wmma", "flash", nullptr};

TEST(CudaAttention, ForwardBf16MatchesCpu) {
  if (!uvit::cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  for (const char* mode : kBf16Impls) {
    for (const Shape& s : kShapes) {
      check_forward(true, mode, s, true);
      check_forward(true, mode, s, false);
    }
    check_forward(true, mode, Shape{2, 258, 16, 72}, true);  // U-ViT-H/2 shape, several q tiles
    check_forward(true, mode, Shape{1, 200, 2, 128}, true);  // the largest fused head dim
    check_forward(true, mode, Shape{1, 70, 2, 136}, true);   // beyond it: the unfused path
  }
  check_forward(true, "fused", kShapes[0], true);  // the old name of wmma
}

// The flash kernel over the tile edges (N around 64, N = 1), padded / odd / largest head dims,
// several heads and batch elements; then misaligned qkv/out (its scalar load and store paths).
TEST(CudaAttention, ForwardBf16FlashShapes) {
  if (!uvit::cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  int i = 0;
  for (int N : {1, 7, 64, 65, 257, 258})
    for (int Dh : {32, 33, 64, 72, 128}) {
      const Shape s{1 + i % 3, N, 1 + (i * 7) % 16, Dh};
      check_forward(true, "flash", s, i % 4 != 3);
      ++i;
    }
  check_forward(true, "flash", Shape{2, 65, 3, 64}, true, 1);
  check_forward(true, "flash", Shape{1, 130, 2, 72}, true, 4);
  check_forward(true, "flash", Shape{2, 70, 2, 33}, true, 1);
}

TEST(CudaAttention, BackwardMatchesCpu) {
  if (!uvit::cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  for (bool bf16 : {false, true})
    for (const Shape& s : kShapes) check_backward(bf16, s);
}

// Every bf16 backward implementation (flash is the default for Dh <= 128; wmma and unfused both
// select the unfused backward), dq/dk/dv compared separately.
TEST(CudaAttention, BackwardBf16ModesMatchCpu) {
  if (!uvit::cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  for (const char* mode : kBf16Impls) {
    for (const Shape& s : kShapes) check_backward(true, s, mode, true, 2e-2);
    check_backward(true, Shape{1, 70, 2, 136}, mode, true, 2e-2);  // beyond flash: unfused
  }
}

// The flash backward over the tile edges (N around 64, N = 1), padded / odd / largest head dims,
// several heads and batch elements; then misaligned tensors (its scalar load and store paths).
TEST(CudaAttention, BackwardBf16FlashShapes) {
  if (!uvit::cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  int i = 0;
  for (int N : {1, 7, 64, 65, 257, 258})
    for (int Dh : {32, 33, 64, 72, 128}) {
      check_backward(true, Shape{1 + i % 3, N, 1 + (i * 7) % 16, Dh}, "flash", true, 2e-2);
      ++i;
    }
  check_backward(true, Shape{2, 258, 16, 72}, "flash", true, 2e-2);  // U-ViT-H/2
  check_backward(true, Shape{2, 65, 3, 64}, "flash", true, 2e-2, 1);
  check_backward(true, Shape{1, 130, 2, 72}, "flash", true, 2e-2, 4);
  check_backward(true, Shape{2, 70, 2, 33}, "flash", true, 2e-2, 1);
}

// The flash backward is deterministic (no atomics): two runs give bit-identical dqkv.
TEST(CudaAttention, BackwardBf16FlashDeterministic) {
  if (!uvit::cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  for (const Shape& s : {Shape{2, 258, 16, 72}, Shape{3, 65, 5, 33}, Shape{1, 200, 2, 128}}) {
    std::mt19937 g(s.N + s.Dh);
    const int D = s.H * s.Dh;
    const size_t nqkv = size_t(s.B) * s.N * 3 * D, nout = size_t(s.B) * s.N * D,
                 nlse = size_t(s.B) * s.H * s.N;
    Dev dq(nqkv * 2), ddo(nout * 2), dO(nout * 2), dl(nlse * 4), r1(nqkv * 2), r2(nqkv * 2);
    upload(dq, randv(nqkv, g, 2.f), true);
    upload(ddo, randv(nout, g, 1.f), true);
    upload(r1, std::vector<float>(nqkv, 1.f), true);
    upload(r2, std::vector<float>(nqkv, -7.f), true);
    auto ctx = make_ctx(true, "flash");
    const float scale = 1.f / std::sqrt(float(s.Dh));
    ctx->forward(dq.p, dO.p, static_cast<float*>(dl.p), s.B, s.N, s.H, s.Dh, scale);
    for (const Dev* r : {&r1, &r2})
      ctx->backward(ddo.p, dq.p, dO.p, static_cast<const float*>(dl.p), r->p, s.B, s.N, s.H, s.Dh,
                    scale);
    std::vector<uint16_t> h1(nqkv), h2(nqkv);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(h1.data(), r1.p, nqkv * 2, cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(h2.data(), r2.p, nqkv * 2, cudaMemcpyDeviceToHost), cudaSuccess);
    size_t diff = 0, nonzero = 0;
    for (size_t i = 0; i < nqkv; ++i) diff += h1[i] != h2[i], nonzero += (h1[i] & 0x7fff) != 0;
    EXPECT_EQ(diff, 0u) << name("bwd determinism", true, "flash", s);
    EXPECT_GT(nonzero, nqkv / 2) << name("bwd determinism", true, "flash", s);
  }
}

// The shapes cuDNN's SDPA must take itself (no fallback): U-ViT-H/2's (258 tokens, head dim 72)
// and S/2's (257, 64) with fewer heads, the full H/2 head count, and other head dims that are
// multiples of 8; forward with and without statistics, backward split into dq/dk/dv.
const Shape kCudnnShapes[] = {{2, 258, 4, 72}, {2, 257, 3, 64},  {2, 258, 16, 72},
                              {3, 17, 2, 32},  {1, 200, 2, 128}, {2, 65, 8, 64}};

TEST(CudaAttention, CudnnForwardMatchesCpu) {
  if (!uvit::cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  if (!have_cudnn_sdpa()) GTEST_SKIP() << "no cuDNN SDPA in this build";
  for (const Shape& s : kCudnnShapes) {
    check_forward(true, "cudnn-only", s, true);
    check_forward(true, "cudnn-only", s, false);
  }
}

TEST(CudaAttention, CudnnBackwardMatchesCpu) {
  if (!uvit::cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  if (!have_cudnn_sdpa()) GTEST_SKIP() << "no cuDNN SDPA in this build";
  for (const Shape& s : kCudnnShapes) check_backward(true, s, "cudnn-only", true, 2e-2);
  for (const Shape& s : {kCudnnShapes[0], kCudnnShapes[1]}) check_backward(true, s, "cudnn-only");
}

// Through the context (UVIT_ATTENTION=cudnn): every test shape, where cuDNN turns one down (odd
// head dims, misaligned tensors) the flash kernels run; fp32 always runs ours.
TEST(CudaAttention, CudnnContextMatchesCpu) {
  if (!uvit::cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  for (const Shape& s : kShapes) {
    check_forward(true, "cudnn", s, true);
    check_forward(true, "cudnn", s, false);
    check_backward(true, s, "cudnn", true, 2e-2);
  }
  check_forward(true, "cudnn", Shape{1, 130, 2, 72}, true, 4);
  check_forward(true, "cudnn", Shape{2, 70, 2, 33}, true, 1);
  check_backward(true, Shape{1, 130, 2, 72}, "cudnn", true, 2e-2, 4);
  check_backward(true, Shape{2, 70, 2, 33}, "cudnn", true, 2e-2, 1);
  check_forward(false, "cudnn", Shape{2, 65, 3, 64}, true);  // fp32: ours
  check_backward(false, Shape{2, 65, 3, 64}, "cudnn");
}

TEST(CudaAttention, RejectsUnknownMode) {
  if (!uvit::cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  EXPECT_THROW(make_ctx(true, "flash9"), uvit::Error);
}

namespace {

// *ms = the mean time of 20 calls of run() after 3 warm-ups (cudaEvent on the default stream).
void time_calls(const std::function<void()>& run, float* ms) {
  for (int r = 0; r < 3; ++r) run();
  cudaEvent_t e0, e1;
  ASSERT_EQ(cudaEventCreate(&e0), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&e1), cudaSuccess);
  EXPECT_EQ(cudaEventRecord(e0, 0), cudaSuccess);
  for (int r = 0; r < 20; ++r) run();
  EXPECT_EQ(cudaEventRecord(e1, 0), cudaSuccess);
  EXPECT_EQ(cudaEventSynchronize(e1), cudaSuccess);
  EXPECT_EQ(cudaEventElapsedTime(ms, e0, e1), cudaSuccess);
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  *ms /= 20.f;
}

// The timed implementations: ours, then cuDNN's SDPA alone (label "cudnn") where this build has
// it; a shape cuDNN turns down prints a line instead of a time.
std::vector<const char*> timed_modes(std::initializer_list<const char*> ours) {
  std::vector<const char*> m(ours);
  if (have_cudnn_sdpa()) m.push_back("cudnn-only");
  return m;
}

std::unique_ptr<uvit::cuda::AttentionContext> timed_ctx(const char* mode) {
  if (std::string(mode) == "cudnn-only") return std::make_unique<CudnnOnly>(false);
  return make_ctx(true, mode);
}

// time_calls of ctx's calls; -1 when cuDNN turned them down.
float time_ctx(uvit::cuda::AttentionContext& ctx, const std::function<void()>& run) {
  float ms = 0.f;
  time_calls(run, &ms);
  if (auto* c = dynamic_cast<CudnnOnly*>(&ctx); c && c->declined()) return -1.f;
  return ms;
}

// One timing line (bench/gpu/summarize.py parses it): useful TFLOP/s = flop / time.
void print_time(const char* dir, const char* mode, const Shape& s, float ms, double flop) {
  const char* label = std::string(mode) == "cudnn-only" ? "cudnn" : mode;
  if (ms < 0)
    std::printf("  attention %s bf16 %-10s B=%d N=%d H=%d Dh=%d: turned down by cuDNN\n", dir,
                label, s.B, s.N, s.H, s.Dh);
  else
    std::printf("  attention %s bf16 %-10s B=%d N=%d H=%d Dh=%d: %.3f ms  %.1f TFLOP/s\n", dir,
                label, s.B, s.N, s.H, s.Dh, ms, flop / (ms * 1e-3) / 1e12);
}

}  // namespace

// Forward (and backward) timings of every bf16 implementation at U-ViT-H/2 (256px), U-ViT-M and
// U-ViT-S/2 shapes, printed for the benchmark notes. FLOPs = 4 B H N^2 Dh forward, 2.5x that
// backward.
TEST(CudaAttentionTiming, Shapes) {
  if (!uvit::cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  // U-ViT-H/2 at 256 px, U-ViT-M, and U-ViT-S/2 on CIFAR-10 (bench/gpu/anchors.py times torch's
  // SDPA backends at the first and last; summarize.py puts them side by side).
  const Shape shapes[] = {{128, 258, 16, 72}, {128, 257, 12, 64}, {128, 257, 8, 64}};
  for (const Shape& s : shapes) {
    const int D = s.H * s.Dh;
    const size_t nqkv = size_t(s.B) * s.N * 3 * D, nout = size_t(s.B) * s.N * D;
    std::vector<uint16_t> h(nqkv);
    uint32_t x = 12345u;
    for (auto& v : h) {  // cheap uniform values in [-2, 2)
      x = x * 1664525u + 1013904223u;
      v = uvit::float_to_bf16(float(int(x >> 16) - 32768) / 16384.f);
    }
    Dev dq(nqkv * 2), dout(nout * 2);
    ASSERT_EQ(cudaMemcpy(dq.p, h.data(), nqkv * 2, cudaMemcpyHostToDevice), cudaSuccess);
    const float scale = 1.f / std::sqrt(float(s.Dh));
    const double flop = 4.0 * s.B * s.H * double(s.N) * s.N * s.Dh;
    for (const char* mode : timed_modes({"unfused", "wmma", "flash"})) {
      auto ctx = timed_ctx(mode);
      const float ms =
          time_ctx(*ctx, [&] { ctx->forward(dq.p, dout.p, nullptr, s.B, s.N, s.H, s.Dh, scale); });
      if (::testing::Test::HasFatalFailure()) return;
      print_time("fwd", mode, s, ms, flop);
    }
    // Backward (dout = qkv's first nout values, lse from the flash forward).
    Dev ddo(nout * 2), dl(size_t(s.B) * s.H * s.N * 4), ddq(nqkv * 2);
    ASSERT_EQ(cudaMemcpy(ddo.p, h.data(), nout * 2, cudaMemcpyHostToDevice), cudaSuccess);
    make_ctx(true, "flash")
        ->forward(dq.p, dout.p, static_cast<float*>(dl.p), s.B, s.N, s.H, s.Dh, scale);
    for (const char* mode : timed_modes({"unfused", "flash"})) {
      auto ctx = timed_ctx(mode);
      const float ms = time_ctx(*ctx, [&] {
        ctx->backward(ddo.p, dq.p, dout.p, static_cast<const float*>(dl.p), ddq.p, s.B, s.N, s.H,
                      s.Dh, scale);
      });
      if (::testing::Test::HasFatalFailure()) return;
      print_time("bwd", mode, s, ms, 2.5 * flop);
    }
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
}

#endif  // UVIT_HAVE_CUDA
