// The CUDA backend's own kernels (everything but GEMM and plain attention; the biased attention of
// MDT is here) against the CPU backend on
// random inputs, in fp32 mode (~1e-5 of max|ref|) and bf16 mode (inputs rounded to bf16 on the
// host before both runs; ~1e-2 of max|ref|). The CPU backend's bf16 mode (docs/cpu_bf16.md) is
// held to the same bounds against its fp32 mode here, where the CPU has bf16 units. "+=" outputs
// are pre-filled with random values on both sides. Every comparison prints its max abs error so one
// GPU run shows every deviation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "gpu_compare.hpp"
#include "uvit/array.hpp"
#include "uvit/backend.hpp"
#include "uvit/error.hpp"

namespace {

using uvit::Backend;
using VecF = std::vector<float>;
using uvit::test::compare;
using uvit::test::randv;

float round_bf16(float x) { return uvit::bf16_to_float(uvit::float_to_bf16(x)); }

// One mode, "DEVICE PRECISION" (e.g. "cuda bf16"): the backend under test (`gpu`, the CUDA
// backend or the CPU's bf16 mode), the CPU fp32 reference and host<->device helpers. Device
// buffers are freed at scope end.
class Mode {
 public:
  explicit Mode(const std::string& spec)
      : device(spec.substr(0, spec.find(' '))),
        prec(spec.substr(spec.find(' ') + 1)),
        gpu(uvit::make_backend(device, prec)),
        cpu(uvit::make_cpu_backend()),
        bf16(prec == "bf16") {}
  ~Mode() {
    for (void* p : bufs_) gpu->free_bytes(p);
  }
  double tol() const { return bf16 ? 1e-2 : 1e-5; }
  // Act inputs are rounded to bf16 in bf16 mode so both backends see the same values.
  VecF act(VecF v) const {
    if (bf16)
      for (auto& x : v) x = round_bf16(x);
    return v;
  }
  // Device copies. `off` elements of slack in front make the pointer deliberately unaligned.
  float* f32(const VecF& h, size_t off = 0) {
    float* p = static_cast<float*>(alloc((h.size() + off) * 4)) + off;
    gpu->upload(p, h.data(), h.size() * 4);
    return p;
  }
  float* actbuf(const VecF& h, size_t off = 0) {
    char* base = static_cast<char*>(alloc((h.size() + off) * gpu->act_bytes()));
    float* p = reinterpret_cast<float*>(base + off * gpu->act_bytes());
    if (bf16) {
      std::vector<uint16_t> b(h.size());
      for (size_t i = 0; i < h.size(); ++i) b[i] = uvit::float_to_bf16(h[i]);
      gpu->upload(p, b.data(), b.size() * 2);
    } else {
      gpu->upload(p, h.data(), h.size() * 4);
    }
    return p;
  }
  VecF get_f32(const float* p, size_t n) {
    VecF h(n);
    gpu->download(h.data(), p, n * 4);
    return h;
  }
  VecF get_act(const float* p, size_t n) {
    VecF h(n);
    if (bf16) {
      std::vector<uint16_t> b(n);
      gpu->download(b.data(), p, n * 2);
      for (size_t i = 0; i < n; ++i) h[i] = uvit::bf16_to_float(b[i]);
    } else {
      gpu->download(h.data(), p, n * 4);
    }
    return h;
  }
  // The CPU's act output as the GPU would store it.
  VecF act_out(VecF v) const { return act(std::move(v)); }

  std::string device, prec;
  std::unique_ptr<Backend> gpu, cpu;
  bool bf16;

 private:
  void* alloc(size_t bytes) {
    void* p = gpu->alloc_bytes(bytes);
    bufs_.push_back(p);
    return p;
  }
  std::vector<void*> bufs_;
};

// The modes this machine can run: CUDA fp32 and bf16 with a GPU, the CPU's bf16 mode where the
// CPU has bf16 units.
std::vector<const char*> modes() {
  std::vector<const char*> m;
  if (uvit::cuda_available()) m = {"cuda fp32", "cuda bf16"};
  if (uvit::cpu_has_bf16()) m.push_back("cpu bf16");
  return m;
}

#define REQUIRE_MODES() \
  if (modes().empty()) GTEST_SKIP() << "no CUDA GPU and no CPU bf16 units"

// ------------------------------------------------------------------ basics and flat kernels

TEST(CudaKernels, BackendIdentityAndMemory) {
  REQUIRE_MODES();
  for (const char* prec : modes()) {
    SCOPED_TRACE(prec);
    Mode m(prec);
    EXPECT_EQ(m.gpu->name(), m.device);
    EXPECT_EQ(m.gpu->precision(), m.prec);
    EXPECT_EQ(m.gpu->act_bytes(), m.bf16 ? 2u : 4u);
    const VecF h = randv(1037, 1);
    float* d = m.f32(h);
    EXPECT_EQ(m.get_f32(d, h.size()), h);
    // An impossible size: one-line uvit::Error naming the request.
    try {
      m.gpu->alloc_bytes(size_t{1} << 52);
      ADD_FAILURE() << "no error for a 4 PiB allocation";
    } catch (const uvit::Error& e) {
      const char* msg = m.device == "cuda" ? "out of memory: CUDA could not allocate"
                                           : "out of memory: could not allocate";
      EXPECT_NE(std::string(e.what()).find(msg), std::string::npos) << e.what();
    }
    void* z = m.gpu->alloc_bytes(0);  // a valid pointer that can be freed
    m.gpu->free_bytes(z);
  }
}

TEST(CudaKernels, FlatFp32Kernels) {
  REQUIRE_MODES();
  for (const char* prec : modes()) {
    SCOPED_TRACE(prec);
    Mode m(prec);
    for (size_t n : {size_t{1}, size_t{7}, size_t{4099}, size_t{100003}}) {
      for (size_t off : {size_t{0}, size_t{1}}) {
        const std::string tag = "n=" + std::to_string(n) + " off=" + std::to_string(off);
        const VecF x = randv(n, 2), y0 = randv(n, 3);
        float* dx = m.f32(x, off);
        float* dy = m.f32(y0, off);
        // copy
        float* dc = m.f32(VecF(n, 0.f), off);
        m.gpu->copy(dc, dx, n);
        compare("copy " + tag, m.get_f32(dc, n), x, 0);
        // fill (non-zero and zero)
        m.gpu->fill(dc, -2.5f, n);
        compare("fill " + tag, m.get_f32(dc, n), VecF(n, -2.5f), 0);
        m.gpu->fill(dc, 0.f, n);
        compare("fill0 " + tag, m.get_f32(dc, n), VecF(n, 0.f), 0);
        // axpy, scale
        VecF ry = y0;
        m.cpu->axpy(ry.data(), x.data(), 0.37f, n);
        m.gpu->axpy(dy, dx, 0.37f, n);
        compare("axpy " + tag, m.get_f32(dy, n), ry, 1e-6);
        m.cpu->scale(ry.data(), -1.7f, n);
        m.gpu->scale(dy, -1.7f, n);
        compare("scale " + tag, m.get_f32(dy, n), ry, 1e-6);
        // sum_squares in double
        const double ss_ref = m.cpu->sum_squares(x.data(), n);
        const double ss = m.gpu->sum_squares(dx, n);
        std::printf("  sum_squares %-46s got=%.17g ref=%.17g\n", tag.c_str(), ss, ss_ref);
        EXPECT_NEAR(ss, ss_ref, 1e-12 * ss_ref) << tag;
      }
    }
  }
}

TEST(CudaKernels, ActConversions) {
  REQUIRE_MODES();
  for (const char* prec : modes()) {
    SCOPED_TRACE(prec);
    Mode m(prec);
    for (size_t n : {size_t{1}, size_t{9}, size_t{65541}}) {
      for (size_t off : {size_t{0}, size_t{3}}) {
        const std::string tag = "n=" + std::to_string(n) + " off=" + std::to_string(off);
        const VecF x = randv(n, 4, -300.f, 300.f);
        float* src = m.f32(x, off);
        float* a = m.actbuf(VecF(n, 0.f), off);
        m.gpu->to_act(src, a, n);
        // bf16 rounding is round-to-nearest-even on both sides: exact equality
        compare("to_act " + tag, m.get_act(a, n), m.act(x), 0);
        float* back = m.f32(VecF(n, 0.f), off);
        m.gpu->from_act(a, back, n);
        compare("from_act " + tag, m.get_f32(back, n), m.act(x), 0);
        float* c = m.actbuf(VecF(n, 1.f), off);
        m.gpu->copy_act(c, a, n);
        compare("copy_act " + tag, m.get_act(c, n), m.act(x), 0);
        m.gpu->zero_act(c, n);
        compare("zero_act " + tag, m.get_act(c, n), VecF(n, 0.f), 0);
        // axpy_act: y += a x in act precision
        const VecF y0 = m.act(randv(n, 5, -300.f, 300.f)), xa = m.act(x);
        float* dy = m.actbuf(y0, off);
        m.gpu->axpy_act(dy, a, -0.5f, n);
        VecF ref = y0;
        for (size_t i = 0; i < n; ++i) ref[i] += -0.5f * xa[i];
        compare("axpy_act " + tag, m.get_act(dy, n), m.act_out(ref), m.bf16 ? 1e-2 : 1e-6);
      }
    }
  }
}

TEST(CudaKernels, Activations) {
  REQUIRE_MODES();
  for (const char* prec : modes()) {
    SCOPED_TRACE(prec);
    Mode m(prec);
    for (size_t n : {size_t{1}, size_t{13}, size_t{4096}, size_t{100001}}) {
      for (size_t off : {size_t{0}, size_t{1}}) {
        const std::string tag = "n=" + std::to_string(n) + " off=" + std::to_string(off);
        const VecF x = m.act(randv(n, 6, -6.f, 6.f)), dy = m.act(randv(n, 7));
        float* dx_ = m.actbuf(x, off);
        float* ddy = m.actbuf(dy, off);
        float* out = m.actbuf(VecF(n, 0.f), off);
        VecF ref(n);

        m.cpu->gelu_fwd(x.data(), ref.data(), n);
        m.gpu->gelu_fwd(dx_, out, n);
        compare("gelu_fwd " + tag, m.get_act(out, n), m.act_out(ref), m.tol());
        m.cpu->gelu_bwd(dy.data(), x.data(), ref.data(), n);
        m.gpu->gelu_bwd(ddy, dx_, out, n);
        compare("gelu_bwd " + tag, m.get_act(out, n), m.act_out(ref), m.tol());
        m.cpu->silu_fwd(x.data(), ref.data(), n);
        m.gpu->silu_fwd(dx_, out, n);
        compare("silu_fwd " + tag, m.get_act(out, n), m.act_out(ref), m.tol());
        m.cpu->silu_bwd(dy.data(), x.data(), ref.data(), n);
        m.gpu->silu_bwd(ddy, dx_, out, n);
        compare("silu_bwd " + tag, m.get_act(out, n), m.act_out(ref), m.tol());
        m.cpu->tanh_fwd(x.data(), ref.data(), n);
        m.gpu->tanh_fwd(dx_, out, n);
        compare("tanh_fwd " + tag, m.get_act(out, n), m.act_out(ref), m.tol());
        m.cpu->tanh_bwd(dy.data(), x.data(), ref.data(), n);
        m.gpu->tanh_bwd(ddy, dx_, out, n);
        compare("tanh_bwd " + tag, m.get_act(out, n), m.act_out(ref), m.tol());
        // dx aliasing dy (allowed for gelu_bwd)
        m.cpu->gelu_bwd(dy.data(), x.data(), ref.data(), n);
        m.gpu->gelu_bwd(ddy, dx_, ddy, n);
        compare("gelu_bwd in place " + tag, m.get_act(ddy, n), m.act_out(ref), m.tol());
      }
    }
  }
}

// ------------------------------------------------------------------ bias

TEST(CudaKernels, AddBiasAndBiasGrad) {
  REQUIRE_MODES();
  struct Shape {
    int M, N;
  };
  for (const char* prec : modes()) {
    SCOPED_TRACE(prec);
    Mode m(prec);
    for (Shape s : {Shape{1, 1}, Shape{37, 13}, Shape{300, 768}, Shape{65, 4608}, Shape{4100, 1152},
                    Shape{20000, 24}, Shape{129, 1000}}) {
      const std::string tag = "M=" + std::to_string(s.M) + " N=" + std::to_string(s.N);
      const size_t n = size_t(s.M) * s.N;
      const VecF y0 = m.act(randv(n, 8)), b = m.act(randv(s.N, 9));
      VecF ry = y0;
      m.cpu->add_bias(ry.data(), b.data(), s.M, s.N);
      float* dy = m.actbuf(y0);
      m.gpu->add_bias(dy, m.actbuf(b), s.M, s.N);
      compare("add_bias " + tag, m.get_act(dy, n), m.act_out(ry), m.tol());

      const VecF g = m.act(randv(n, 10)), db0 = randv(s.N, 11, -5.f, 5.f);
      VecF rdb = db0;
      m.cpu->bias_grad(g.data(), rdb.data(), s.M, s.N);
      float* dg = m.actbuf(g);
      float* ddb = m.f32(db0);
      m.gpu->bias_grad(dg, ddb, s.M, s.N);
      const VecF got = m.get_f32(ddb, s.N);
      // db is fp32 and the inputs are identical, so fp32 accuracy in both modes
      compare("bias_grad " + tag, got, rdb, 1e-5);
      // deterministic: the same sum again gives the same bits
      float* ddb2 = m.f32(db0);
      m.gpu->bias_grad(dg, ddb2, s.M, s.N);
      EXPECT_EQ(m.get_f32(ddb2, s.N), got) << "bias_grad not reproducible " << tag;
    }
  }
}

// ------------------------------------------------------------------ layernorm

TEST(CudaKernels, LayerNorm) {
  REQUIRE_MODES();
  struct Shape {
    int M, D;
  };
  for (const char* prec : modes()) {
    SCOPED_TRACE(prec);
    Mode m(prec);
    for (Shape s : {Shape{1, 1}, Shape{5, 7}, Shape{333, 64}, Shape{65, 512}, Shape{129, 768},
                    Shape{31, 1152}, Shape{17, 1536}, Shape{9, 1600}, Shape{3000, 37},
                    Shape{2050, 1024}, Shape{16, 1536}, Shape{64, 768}}) {
      const std::string tag = "M=" + std::to_string(s.M) + " D=" + std::to_string(s.D);
      const size_t n = size_t(s.M) * s.D;
      // an offset mean so the two-pass variance matters
      const VecF x = m.act(randv(n, 12, 2.f, 4.f));
      const VecF w = randv(s.D, 13, 0.5f, 1.5f), b = randv(s.D, 14);
      VecF ry(n), rmean(s.M), rrstd(s.M);
      m.cpu->layernorm_fwd(x.data(), w.data(), b.data(), ry.data(), rmean.data(), rrstd.data(), s.M,
                           s.D, 1e-5f);
      float* dxin = m.actbuf(x);
      // odd M: w and b one float off 16-byte alignment (the per-element parameter loads)
      const size_t woff = s.M % 2;
      float* dw = m.f32(w, woff);
      float* dbias = m.f32(b, woff);
      float* dyout = m.actbuf(VecF(n, 0.f));
      float* dmean = m.f32(VecF(s.M, 0.f));
      float* drstd = m.f32(VecF(s.M, 0.f));
      m.gpu->layernorm_fwd(dxin, dw, dbias, dyout, dmean, drstd, s.M, s.D, 1e-5f);
      compare("layernorm_fwd y " + tag, m.get_act(dyout, n), m.act_out(ry), m.tol());
      compare("layernorm_fwd mean " + tag, m.get_f32(dmean, s.M), rmean, 1e-5);
      compare("layernorm_fwd rstd " + tag, m.get_f32(drstd, s.M), rrstd, 1e-5);
      // inference form: no statistics
      m.gpu->layernorm_fwd(dxin, dw, dbias, dyout, nullptr, nullptr, s.M, s.D, 1e-5f);
      compare("layernorm_fwd nostats " + tag, m.get_act(dyout, n), m.act_out(ry), m.tol());

      // backward: dx +=, dw +=, db +=, from the CPU's statistics
      const VecF g = m.act(randv(n, 15)), dx0 = m.act(randv(n, 16));
      const VecF dw0 = randv(s.D, 17, -3.f, 3.f), db0 = randv(s.D, 18, -3.f, 3.f);
      VecF rdx = dx0, rdw = dw0, rdb = db0;
      m.cpu->layernorm_bwd(g.data(), x.data(), w.data(), rmean.data(), rrstd.data(), rdx.data(),
                           rdw.data(), rdb.data(), s.M, s.D);
      float* dg = m.actbuf(g);
      float* ddx = m.actbuf(dx0);
      float* ddw = m.f32(dw0);
      float* ddb = m.f32(db0);
      m.gpu->layernorm_bwd(dg, dxin, dw, m.f32(rmean), m.f32(rrstd), ddx, ddw, ddb, s.M, s.D);
      compare("layernorm_bwd dx " + tag, m.get_act(ddx, n), m.act_out(rdx), m.tol());
      compare("layernorm_bwd dw " + tag, m.get_f32(ddw, s.D), rdw, 1e-5);
      compare("layernorm_bwd db " + tag, m.get_f32(ddb, s.D), rdb, 1e-5);
    }
  }
}

// ------------------------------------------------------------------ LightningDiT

TEST(CudaKernels, RmsNormGroups) {
  REQUIRE_MODES();
  struct Shape {
    int M, G, D, ld;
  };
  for (const char* prec : modes()) {
    SCOPED_TRACE(prec);
    Mode m(prec);
    for (Shape s : {Shape{5, 1, 7, 7}, Shape{600, 1, 1152, 1152}, Shape{512, 16, 72, 3 * 1152},
                    Shape{77, 12, 64, 3 * 768 + 5}}) {
      const std::string tag =
          "M=" + std::to_string(s.M) + " G=" + std::to_string(s.G) + " D=" + std::to_string(s.D);
      const size_t n = size_t(s.M) * s.ld, rows = size_t(s.M) * s.G;
      const VecF x = m.act(randv(n, 21, -2.f, 3.f)), w = randv(s.D, 22, 0.5f, 1.5f);
      VecF ry = m.act(randv(n, 23)), rrstd(rows);
      float* dyout = m.actbuf(ry);
      m.cpu->rmsnorm_fwd(x.data(), w.data(), ry.data(), rrstd.data(), s.M, s.G, s.D, s.ld, 1e-6f);
      float* dx_in = m.actbuf(x);
      float* dw = m.f32(w);
      float* drstd = m.f32(VecF(rows, 0.f));
      m.gpu->rmsnorm_fwd(dx_in, dw, dyout, drstd, s.M, s.G, s.D, s.ld, 1e-6f);
      compare("rmsnorm_fwd y " + tag, m.get_act(dyout, n), m.act_out(ry), m.tol());
      compare("rmsnorm_fwd rstd " + tag, m.get_f32(drstd, rows), rrstd, 1e-5);
      for (bool acc : {true, false}) {
        const VecF g = m.act(randv(n, 24)), dx0 = m.act(randv(n, 25));
        const VecF dw0 = randv(s.D, 26, -3.f, 3.f);
        VecF rdx = acc ? dx0 : g, rdw = dw0;
        m.cpu->rmsnorm_bwd(g.data(), x.data(), w.data(), rrstd.data(), rdx.data(), rdw.data(), s.M,
                           s.G, s.D, s.ld, acc);
        float* dg = m.actbuf(g);
        float* ddx = acc ? m.actbuf(dx0) : dg;  // overwrite runs in place on dy
        float* ddw = m.f32(dw0);
        m.gpu->rmsnorm_bwd(dg, dx_in, dw, m.f32(rrstd), ddx, ddw, s.M, s.G, s.D, s.ld, acc);
        const std::string t2 = tag + (acc ? " +=" : " in place");
        compare("rmsnorm_bwd dx " + t2, m.get_act(ddx, n), m.act_out(rdx), m.tol());
        compare("rmsnorm_bwd dw " + t2, m.get_f32(ddw, s.D), rdw, m.bf16 ? 1e-2 : 1e-5);
      }
    }
  }
}

TEST(CudaKernels, SwiGluAndRope) {
  REQUIRE_MODES();
  for (const char* prec : modes()) {
    SCOPED_TRACE(prec);
    Mode m(prec);
    const int M = 300, H = 2048;
    const VecF x = m.act(randv(size_t(M) * 2 * H, 31, -4.f, 4.f)),
               g = m.act(randv(size_t(M) * H, 32));
    VecF ry(size_t(M) * H), rdx(size_t(M) * 2 * H);
    m.cpu->swiglu_fwd(x.data(), ry.data(), M, H);
    m.cpu->swiglu_bwd(g.data(), H, x.data(), rdx.data(), M, H);
    float* dx = m.actbuf(x);
    float* dy = m.actbuf(VecF(ry.size(), 0.f));
    m.gpu->swiglu_fwd(dx, dy, M, H);
    compare("swiglu_fwd", m.get_act(dy, ry.size()), m.act_out(ry), m.tol());
    float* ddx = m.actbuf(VecF(rdx.size(), 0.f));
    m.gpu->swiglu_bwd(m.actbuf(g), H, dx, ddx, M, H);
    compare("swiglu_bwd", m.get_act(ddx, rdx.size()), m.act_out(rdx), m.tol());

    const int B = 3, N = 256, G = 32, Dh = 72, ld = 3 * 16 * Dh;  // q and k heads of XL/1
    const VecF c = randv(size_t(N) * Dh, 33), s = randv(size_t(N) * Dh, 34);
    const VecF q = m.act(randv(size_t(B) * N * ld, 35));
    for (bool inv : {false, true}) {
      VecF rq = q;
      m.cpu->rope(rq.data(), c.data(), s.data(), B, N, G, Dh, ld, inv);
      float* dq = m.actbuf(q);
      m.gpu->rope(dq, m.f32(c), m.f32(s), B, N, G, Dh, ld, inv);
      compare(inv ? "rope inverse" : "rope", m.get_act(dq, q.size()), m.act_out(rq), m.tol());
      VecF nq = q;  // LaVin-DiT's NeoX sections (Dh 72 = 3 x 24)
      m.cpu->rope(nq.data(), c.data(), s.data(), B, N, G, Dh, ld, inv, 24);
      float* dn = m.actbuf(q);
      m.gpu->rope(dn, m.f32(c), m.f32(s), B, N, G, Dh, ld, inv, 24);
      compare("rope neox", m.get_act(dn, q.size()), m.act_out(nq), m.tol());
    }
  }
}

// DiT's adaLN kernels (modulate, gate), the tanh GELU and the 2-D act copy, at an odd shape
// without the shift term and at DiT-XL/2's (256 tokens of 1152 features, the six chunks of the
// adaLN output ldm = 6 D apart). The per-sample gradients are written into a prefilled [B, ldm]
// buffer: what lies outside their chunks must be left alone.
TEST(CudaKernels, AdaLnGeluTanhAndCopy2d) {
  REQUIRE_MODES();
  struct Shape {
    int B, N, D;
    bool shift;
  };
  for (const char* prec : modes()) {
    SCOPED_TRACE(prec);
    Mode m(prec);
    for (Shape s : {Shape{1, 1, 1, true}, Shape{3, 17, 37, false}, Shape{4, 256, 1152, true}}) {
      const std::string tag = "B=" + std::to_string(s.B) + " N=" + std::to_string(s.N) +
                              " D=" + std::to_string(s.D) + (s.shift ? "" : " no shift");
      const int D = s.D, ldm = 6 * D;
      const size_t n = size_t(s.B) * s.N * D, na = size_t(s.B) * ldm;
      const VecF x = m.act(randv(n, 70, -3.f, 3.f)), y = m.act(randv(n, 71)),
                 g = m.act(randv(n, 72)), ada = m.act(randv(na, 73, -0.5f, 0.5f)),
                 dada0 = m.act(randv(na, 74));
      float *gx = m.actbuf(x), *gy = m.actbuf(y), *gg = m.actbuf(g), *gada = m.actbuf(ada);
      const float* shift = s.shift ? ada.data() : nullptr;
      const float* gshift = s.shift ? gada : nullptr;
      auto at = [&](float* p, size_t k) { return m.gpu->act_at(p, k); };

      VecF ref(n), rdada = dada0, rdx(n);
      m.cpu->modulate_fwd(x.data(), shift, ada.data() + D, ldm, ref.data(), s.B, s.N, D);
      float* out = m.actbuf(VecF(n, 0.f));
      m.gpu->modulate_fwd(gx, gshift, at(gada, D), ldm, out, s.B, s.N, D);
      compare("modulate_fwd " + tag, m.get_act(out, n), m.act_out(ref), m.tol());

      m.cpu->modulate_bwd(g.data(), x.data(), ada.data() + D, ldm, rdx.data(),
                          s.shift ? rdada.data() : nullptr, rdada.data() + D, s.B, s.N, D);
      float* gdada = m.actbuf(dada0);
      m.gpu->modulate_bwd(gg, gx, at(gada, D), ldm, out, s.shift ? gdada : nullptr, at(gdada, D),
                          s.B, s.N, D);
      compare("modulate_bwd dx " + tag, m.get_act(out, n), m.act_out(rdx), m.tol());
      compare("modulate_bwd dshift/dscale " + tag, m.get_act(gdada, na), m.act_out(rdada), m.tol());

      m.cpu->gate_fwd(x.data(), y.data(), ada.data() + 2 * D, ldm, ref.data(), s.B, s.N, D);
      m.gpu->gate_fwd(gx, gy, at(gada, 2 * D), ldm, out, s.B, s.N, D);
      compare("gate_fwd " + tag, m.get_act(out, n), m.act_out(ref), m.tol());
      m.cpu->gate_bwd(g.data(), y.data(), ada.data() + 2 * D, ldm, rdx.data(), rdada.data() + 2 * D,
                      s.B, s.N, D);
      m.gpu->gate_bwd(gg, gy, at(gada, 2 * D), ldm, out, at(gdada, 2 * D), s.B, s.N, D);
      compare("gate_bwd dy " + tag, m.get_act(out, n), m.act_out(rdx), m.tol());
      compare("gate_bwd dgate " + tag, m.get_act(gdada, na), m.act_out(rdada), m.tol());

      m.cpu->gelu_tanh_fwd(x.data(), ref.data(), n);
      m.gpu->gelu_tanh_fwd(gx, out, n);
      compare("gelu_tanh_fwd " + tag, m.get_act(out, n), m.act_out(ref), m.tol());
      m.cpu->gelu_tanh_bwd(g.data(), x.data(), ref.data(), n);
      float* gdy = m.actbuf(g);
      m.gpu->gelu_tanh_bwd(gdy, gx, gdy, n);  // dx aliasing dy, as allowed
      compare("gelu_tanh_bwd in place " + tag, m.get_act(gdy, n), m.act_out(ref), m.tol());

      // copy_act_2d: the scale chunk (D columns of B rows ldm apart) into a [B, D + 3] buffer at
      // column 2; the rest of it must stay as it was.
      const long rows = long(s.B), ldd = D + 3;
      const VecF dst0 = m.act(randv(size_t(rows) * ldd, 75));
      VecF rdst = dst0;
      m.cpu->copy_act_2d(rdst.data() + 2, ldd, ada.data() + D, ldm, rows, D);
      float* gdst = m.actbuf(dst0);
      m.gpu->copy_act_2d(at(gdst, 2), ldd, at(gada, D), ldm, rows, D);
      compare("copy_act_2d " + tag, m.get_act(gdst, rdst.size()), rdst, 0);
    }
  }
}

// ------------------------------------------------------------------ tokens

TEST(CudaKernels, PatchIm2colCol2im) {
  REQUIRE_MODES();
  struct Shape {
    int B, C, S, p, W;  // W 0: square; else an S x W image (FiTv2's non-square grids)
  };
  for (const char* prec : modes()) {
    SCOPED_TRACE(prec);
    Mode m(prec);
    for (Shape s : {Shape{1, 1, 2, 2, 0}, Shape{3, 3, 8, 2, 0}, Shape{2, 4, 32, 4, 0},
                    Shape{5, 3, 12, 3, 0}, Shape{2, 4, 4, 2, 8}, Shape{3, 4, 20, 2, 40}}) {
      const std::string tag = "B=" + std::to_string(s.B) + " C=" + std::to_string(s.C) +
                              " S=" + std::to_string(s.S) + " p=" + std::to_string(s.p) +
                              " W=" + std::to_string(s.W);
      const size_t n = size_t(s.B) * s.C * s.S * (s.W > 0 ? s.W : s.S);
      const VecF x = randv(n, 19);
      VecF rcols(n);
      m.cpu->patch_im2col(x.data(), rcols.data(), s.B, s.C, s.S, s.p, s.W);
      float* dcols = m.actbuf(VecF(n, 0.f));
      m.gpu->patch_im2col(m.f32(x), dcols, s.B, s.C, s.S, s.p, s.W);
      compare("patch_im2col " + tag, m.get_act(dcols, n), m.act_out(rcols), 0);

      const VecF cols = m.act(randv(n, 20));
      VecF rx(n);
      m.cpu->patch_col2im(cols.data(), rx.data(), s.B, s.C, s.S, s.p, s.W);
      float* dx = m.f32(VecF(n, 7.f));
      m.gpu->patch_col2im(m.actbuf(cols), dx, s.B, s.C, s.S, s.p, s.W);
      compare("patch_col2im " + tag, m.get_f32(dx, n), rx, 0);
    }
  }
}

TEST(CudaKernels, Conv3x3Im2colCol2im) {
  REQUIRE_MODES();
  struct Shape {
    int B, C, H, W, s;
  };
  for (const char* prec : modes()) {
    SCOPED_TRACE(prec);
    Mode m(prec);
    for (Shape s : {Shape{1, 1, 2, 2, 2}, Shape{2, 3, 28, 28, 2}, Shape{3, 64, 14, 14, 2},
                    Shape{2, 5, 7, 6, 1}}) {
      const std::string tag = "B=" + std::to_string(s.B) + " C=" + std::to_string(s.C) +
                              " H=" + std::to_string(s.H) + " s=" + std::to_string(s.s);
      const size_t n = size_t(s.B) * s.H * s.W * s.C;
      const size_t nc = size_t(s.B) * ((s.H - 1) / s.s + 1) * ((s.W - 1) / s.s + 1) * 9 * s.C;
      const VecF x = m.act(randv(n, 21));
      VecF rcols(nc);
      m.cpu->conv3x3_im2col(x.data(), rcols.data(), s.B, s.C, s.H, s.W, s.s);
      float* dcols = m.actbuf(VecF(nc, 3.f));
      m.gpu->conv3x3_im2col(m.actbuf(x), dcols, s.B, s.C, s.H, s.W, s.s);
      compare("conv3x3_im2col " + tag, m.get_act(dcols, nc), m.act_out(rcols), 0);

      const VecF cols = m.act(randv(nc, 22));
      VecF rx(n);
      m.cpu->conv3x3_col2im(cols.data(), rx.data(), s.B, s.C, s.H, s.W, s.s);
      float* dx = m.actbuf(VecF(n, 7.f));
      m.gpu->conv3x3_col2im(m.actbuf(cols), dx, s.B, s.C, s.H, s.W, s.s);
      compare("conv3x3_col2im " + tag, m.get_act(dx, n), m.act_out(rx), 1e-5);
    }
  }
}

TEST(CudaKernels, TokensFwdBwd) {
  REQUIRE_MODES();
  struct Shape {
    int B, E, L, D;
  };
  for (const char* prec : modes()) {
    SCOPED_TRACE(prec);
    Mode m(prec);
    for (Shape s : {Shape{1, 0, 1, 1}, Shape{3, 2, 16, 40}, Shape{2, 1, 9, 13}, Shape{4, 0, 16, 64},
                    Shape{64, 1, 64, 512}, Shape{7, 3, 5, 1152}}) {
      const std::string tag = "B=" + std::to_string(s.B) + " E=" + std::to_string(s.E) +
                              " L=" + std::to_string(s.L) + " D=" + std::to_string(s.D);
      const int T = s.E + s.L;
      const size_t ne = size_t(s.B) * s.E * s.D, nl = size_t(s.B) * s.L * s.D,
                   nt = size_t(s.B) * T * s.D;
      const VecF ex = m.act(randv(ne, 21)), pa = m.act(randv(nl, 22));
      const VecF pos = randv(size_t(T) * s.D, 23);
      VecF rseq(nt);
      m.cpu->tokens_fwd(ex.data(), pa.data(), pos.data(), rseq.data(), s.B, s.E, s.L, s.D);
      float* dseq = m.actbuf(VecF(nt, 0.f));
      m.gpu->tokens_fwd(s.E ? m.actbuf(ex) : nullptr, m.actbuf(pa), m.f32(pos), dseq, s.B, s.E, s.L,
                        s.D);
      compare("tokens_fwd " + tag, m.get_act(dseq, nt), m.act_out(rseq), m.tol());

      const VecF g = m.act(randv(nt, 24)), dpos0 = randv(size_t(T) * s.D, 25, -2.f, 2.f);
      for (bool with_extras : {true, false}) {
        if (with_extras && s.E == 0) continue;
        const std::string t2 = tag + (with_extras ? " dextras" : " no-dextras");
        VecF rdex(ne, 0.f), rdpa(nl), rdpos = dpos0;
        m.cpu->tokens_bwd(g.data(), with_extras ? rdex.data() : nullptr, rdpa.data(), rdpos.data(),
                          s.B, s.E, s.L, s.D);
        float* ddex = with_extras ? m.actbuf(VecF(ne, 3.f)) : nullptr;
        float* ddpa = m.actbuf(VecF(nl, 3.f));
        float* ddpos = m.f32(dpos0);
        m.gpu->tokens_bwd(m.actbuf(g), ddex, ddpa, ddpos, s.B, s.E, s.L, s.D);
        if (with_extras) compare("tokens_bwd dextras " + t2, m.get_act(ddex, ne), rdex, 0);
        compare("tokens_bwd dpatches " + t2, m.get_act(ddpa, nl), rdpa, 0);
        compare("tokens_bwd dpos " + t2, m.get_f32(ddpos, size_t(T) * s.D), rdpos, 1e-5);
      }
    }
  }
}

TEST(CudaKernels, TimestepEmbedding) {
  REQUIRE_MODES();
  struct Shape {
    int B, D, ldo;
  };
  for (const char* prec : modes()) {
    SCOPED_TRACE(prec);
    Mode m(prec);
    for (Shape s : {Shape{1, 1, 1}, Shape{5, 256, 256}, Shape{3, 257, 260}, Shape{7, 16, 19},
                    Shape{4, 512, 512}}) {
      const std::string tag = "B=" + std::to_string(s.B) + " D=" + std::to_string(s.D) +
                              " ldo=" + std::to_string(s.ldo);
      VecF t = randv(s.B, 26, 0.f, 1000.f);
      t[0] = 0.f;
      const size_t n = size_t(s.B) * s.ldo;
      const VecF prefill = m.act(randv(n, 27));  // gaps between rows stay untouched
      VecF ref = prefill;
      m.cpu->timestep_embedding(t.data(), ref.data(), s.B, s.D, s.ldo);
      float* d = m.actbuf(prefill);
      m.gpu->timestep_embedding(m.f32(t), d, s.B, s.D, s.ldo);
      compare("timestep_embedding " + tag, m.get_act(d, n), m.act_out(ref), m.tol());
    }
  }
}

TEST(CudaKernels, EmbeddingFwdBwd) {
  REQUIRE_MODES();
  for (const char* prec : modes()) {
    SCOPED_TRACE(prec);
    Mode m(prec);
    const int rows = 11, B = 9, D = 33, ldo = 40;
    const std::vector<int32_t> idx = {3, 0, 10, 3, 3, 7, 0, 5, 10};  // repeats accumulate
    const VecF table = randv(size_t(rows) * D, 28);
    int32_t* didx = static_cast<int32_t*>(m.gpu->alloc_bytes(idx.size() * 4));
    m.gpu->upload(didx, idx.data(), idx.size() * 4);
    const VecF out0 = m.act(randv(size_t(B) * ldo, 29));
    VecF ref = out0;
    m.cpu->embedding_fwd(table.data(), idx.data(), ref.data(), B, D, ldo);
    float* dout = m.actbuf(out0);
    m.gpu->embedding_fwd(m.f32(table), didx, dout, B, D, ldo);
    compare("embedding_fwd", m.get_act(dout, ref.size()), m.act_out(ref), 0);

    const VecF g = m.act(randv(size_t(B) * ldo, 30)), dt0 = randv(table.size(), 31);
    VecF rdt = dt0;
    m.cpu->embedding_bwd(g.data(), idx.data(), rdt.data(), B, D, ldo);
    float* ddt = m.f32(dt0);
    m.gpu->embedding_bwd(m.actbuf(g), didx, ddt, B, D, ldo);
    compare("embedding_bwd", m.get_f32(ddt, rdt.size()), rdt, 1e-6);
    m.gpu->free_bytes(didx);
  }
}

// MDT's relative position bias (docs/mdt.md): the full g x g grid and a gathered subset of it (a
// masked pass's kept tokens, in shuffled order): a small geometry, and MDT-XL/2's (16 x 16 tokens,
// 16 heads of 72, 179 of 256 tokens kept at mask ratio 0.3).
struct BiasGeometry {
  int g, B, H, Dh, kept;
};
void PrintTo(const BiasGeometry& b, std::ostream* os) {  // the test's name in ctest
  *os << "g" << b.g << "_B" << b.B << "_H" << b.H << "_Dh" << b.Dh << "_kept" << b.kept;
}
class CudaKernelsBias : public ::testing::TestWithParam<BiasGeometry> {};

TEST_P(CudaKernelsBias, AttentionBiasMatchesCpu) {
  REQUIRE_MODES();
  const BiasGeometry geo = GetParam();
  const int g = geo.g, L = g * g, R = (2 * g - 1) * (2 * g - 1) + 3, B = geo.B, H = geo.H,
            Dh = geo.Dh, D = H * Dh;
  std::vector<int32_t> index(size_t(L) * L);
  for (int i = 0; i < L; ++i)
    for (int j = 0; j < L; ++j)
      index[size_t(i) * L + j] = (i / g - j / g + g - 1) * (2 * g - 1) + (i % g - j % g + g - 1);
  std::vector<int32_t> ids;
  std::mt19937 rng(5);
  for (int b = 0; b < B; ++b) {
    std::vector<int32_t> perm(L);
    for (int i = 0; i < L; ++i) perm[i] = i;
    std::shuffle(perm.begin(), perm.end(), rng);
    ids.insert(ids.end(), perm.begin(), perm.begin() + geo.kept);
  }
  for (const char* prec : modes()) {
    for (bool masked : {false, true}) {
      SCOPED_TRACE(std::string(prec) + (masked ? " masked" : " full"));
      Mode m(prec);
      const int N = masked ? geo.kept : L;
      const float scale = 1.f / std::sqrt(float(Dh));
      const VecF qkv = m.act(randv(size_t(B) * N * 3 * D, 60, -1.5f, 1.5f));
      const VecF table = randv(size_t(R) * H, 61, -2.f, 2.f);
      const VecF dout = m.act(randv(size_t(B) * N * D, 62));
      const VecF dt0 = randv(table.size(), 63);
      Backend::AttnBias hb;
      hb.table = table.data();
      hb.index = index.data();
      hb.ids = masked ? ids.data() : nullptr;
      hb.R = R;
      hb.Lf = L;
      VecF out(size_t(B) * N * D), lse(size_t(B) * H * N), dqkv(qkv.size()), dtable = dt0;
      m.cpu->attention_bias_fwd(qkv.data(), hb, out.data(), lse.data(), B, N, H, Dh, scale);
      m.cpu->attention_bias_bwd(dout.data(), qkv.data(), out.data(), lse.data(), hb, dqkv.data(),
                                dtable.data(), B, N, H, Dh, scale);
      const uvit::DeviceBuffer index_buf(*m.gpu, index.size() * 4), ids_buf(*m.gpu, ids.size() * 4);
      auto* didx = index_buf.as<int32_t>();
      auto* dids = ids_buf.as<int32_t>();
      m.gpu->upload(didx, index.data(), index.size() * 4);
      m.gpu->upload(dids, ids.data(), ids.size() * 4);
      Backend::AttnBias db = hb;
      db.table = m.f32(table);
      db.index = didx;
      db.ids = masked ? dids : nullptr;
      float* gout = m.actbuf(VecF(out.size()));
      float* glse = m.f32(VecF(lse.size()));
      m.gpu->attention_bias_fwd(m.actbuf(qkv), db, gout, glse, B, N, H, Dh, scale);
      compare("attention_bias_fwd out", m.get_act(gout, out.size()), m.act_out(out), m.tol());
      compare("attention_bias_fwd lse", m.get_f32(glse, lse.size()), lse, m.tol());
      float* gdqkv = m.actbuf(VecF(dqkv.size()));
      float* gdt = m.f32(dt0);
      m.gpu->attention_bias_bwd(m.actbuf(dout), m.actbuf(qkv), gout, glse, db, gdqkv, gdt, B, N, H,
                                Dh, scale);
      compare("attention_bias_bwd dqkv", m.get_act(gdqkv, dqkv.size()), dqkv, 2 * m.tol());
      compare("attention_bias_bwd dtable", m.get_f32(gdt, dtable.size()), dtable, 2 * m.tol());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cuda, CudaKernelsBias,
                         ::testing::Values(BiasGeometry{6, 2, 3, 16, 20},
                                           BiasGeometry{16, 2, 16, 72, 179}));

TEST(CudaKernels, Unpatchify) {
  REQUIRE_MODES();
  struct Shape {
    int B, E, C, S, p;
  };
  for (const char* prec : modes()) {
    SCOPED_TRACE(prec);
    Mode m(prec);
    for (Shape s : {Shape{1, 0, 1, 2, 2}, Shape{2, 1, 3, 8, 2}, Shape{3, 2, 4, 32, 4},
                    Shape{2, 77, 4, 8, 2}, Shape{2, 1, 3, 9, 3}}) {
      const std::string tag = "B=" + std::to_string(s.B) + " E=" + std::to_string(s.E) +
                              " C=" + std::to_string(s.C) + " S=" + std::to_string(s.S) +
                              " p=" + std::to_string(s.p);
      const int g = s.S / s.p, T = s.E + g * g, F = s.p * s.p * s.C;
      const size_t nt = size_t(s.B) * T * F, ni = size_t(s.B) * s.C * s.S * s.S;
      const VecF tok = m.act(randv(nt, 32));
      VecF rimg(ni);
      m.cpu->unpatchify_fwd(tok.data(), rimg.data(), s.B, s.E, s.C, s.S, s.p);
      float* dimg = m.f32(VecF(ni, 5.f));
      m.gpu->unpatchify_fwd(m.actbuf(tok), dimg, s.B, s.E, s.C, s.S, s.p);
      compare("unpatchify_fwd " + tag, m.get_f32(dimg, ni), rimg, 0);

      const VecF gi = randv(ni, 33);
      VecF rtok(nt, 9.f);
      m.cpu->unpatchify_bwd(gi.data(), rtok.data(), s.B, s.E, s.C, s.S, s.p);
      float* dtok = m.actbuf(VecF(nt, 9.f));
      m.gpu->unpatchify_bwd(m.f32(gi), dtok, s.B, s.E, s.C, s.S, s.p);
      compare("unpatchify_bwd " + tag, m.get_act(dtok, nt), m.act_out(rtok), 0);
    }
  }
}

// ------------------------------------------------------------------ conv3x3 (fp32 in both modes)

TEST(CudaKernels, Conv3x3) {
  REQUIRE_MODES();
  struct Shape {
    int B, Cin, Cout, H, W;
  };
  for (const char* prec : modes()) {
    SCOPED_TRACE(prec);
    Mode m(prec);
    for (Shape s : {Shape{1, 1, 1, 1, 1}, Shape{3, 3, 4, 8, 8}, Shape{2, 4, 3, 5, 7},
                    Shape{2, 3, 3, 1, 9}, Shape{16, 4, 4, 32, 32}, Shape{3, 3, 3, 64, 64}}) {
      const std::string tag = "B=" + std::to_string(s.B) + " Cin=" + std::to_string(s.Cin) +
                              " Cout=" + std::to_string(s.Cout) + " H=" + std::to_string(s.H) +
                              " W=" + std::to_string(s.W);
      const size_t nx = size_t(s.B) * s.Cin * s.H * s.W, ny = size_t(s.B) * s.Cout * s.H * s.W,
                   nw = size_t(s.Cout) * s.Cin * 9;
      const VecF x = randv(nx, 34), w = randv(nw, 35), b = randv(s.Cout, 36);
      float *dx = m.f32(x), *dw = m.f32(w), *db = m.f32(b);
      for (bool bias : {true, false}) {
        VecF ry(ny);
        m.cpu->conv3x3_fwd(x.data(), w.data(), bias ? b.data() : nullptr, ry.data(), s.B, s.Cin,
                           s.Cout, s.H, s.W);
        float* dy = m.f32(VecF(ny, 0.f));
        m.gpu->conv3x3_fwd(dx, dw, bias ? db : nullptr, dy, s.B, s.Cin, s.Cout, s.H, s.W);
        compare("conv3x3_fwd " + tag + (bias ? "" : " nobias"), m.get_f32(dy, ny), ry, 1e-5);
      }
      const VecF g = randv(ny, 37), gw0 = randv(nw, 38), gb0 = randv(s.Cout, 39);
      for (bool full : {true, false}) {  // full: dx and db too; else dx = db = nullptr
        VecF rdx(nx), rgw = gw0, rgb = gb0;
        m.cpu->conv3x3_bwd(g.data(), x.data(), w.data(), full ? rdx.data() : nullptr, rgw.data(),
                           full ? rgb.data() : nullptr, s.B, s.Cin, s.Cout, s.H, s.W);
        float* ddx = full ? m.f32(VecF(nx, 4.f)) : nullptr;
        float* dgw = m.f32(gw0);
        float* dgb = m.f32(gb0);
        m.gpu->conv3x3_bwd(m.f32(g), dx, dw, ddx, dgw, full ? dgb : nullptr, s.B, s.Cin, s.Cout,
                           s.H, s.W);
        const std::string t2 = tag + (full ? "" : " (dx, db null)");
        if (full) compare("conv3x3_bwd dx " + t2, m.get_f32(ddx, nx), rdx, 1e-5);
        compare("conv3x3_bwd dw " + t2, m.get_f32(dgw, nw), rgw, 1e-5);
        compare("conv3x3_bwd db " + t2, m.get_f32(dgb, s.Cout), rgb, 1e-5);
      }
    }
  }
}

// ------------------------------------------------------------------ optimiser

TEST(CudaKernels, AdamWAndEma) {
  REQUIRE_CUDA();
  Mode m("cuda fp32");  // fp32 state in both modes: one mode suffices
  for (size_t n : {size_t{1}, size_t{1001}, size_t{65536}}) {
    for (size_t off : {size_t{0}, size_t{1}}) {
      for (long step : {1L, 7L, 5000L}) {
        const std::string tag = "n=" + std::to_string(n) + " off=" + std::to_string(off) +
                                " step=" + std::to_string(step);
        VecF p = randv(n, 40), g = randv(n, 41), mm = randv(n, 42, -0.1f, 0.1f),
             v = randv(n, 43, 0.f, 0.01f);
        float *dp = m.f32(p, off), *dg = m.f32(g, off), *dm = m.f32(mm, off), *dv = m.f32(v, off);
        m.cpu->adamw(p.data(), g.data(), mm.data(), v.data(), n, 2e-4f, 0.9f, 0.999f, 1e-8f, 0.03f,
                     step);
        m.gpu->adamw(dp, dg, dm, dv, n, 2e-4f, 0.9f, 0.999f, 1e-8f, 0.03f, step);
        compare("adamw p " + tag, m.get_f32(dp, n), p, 1e-6);
        compare("adamw m " + tag, m.get_f32(dm, n), mm, 1e-6);
        compare("adamw v " + tag, m.get_f32(dv, n), v, 1e-6);
      }
      const std::string tag = "n=" + std::to_string(n) + " off=" + std::to_string(off);
      VecF e = randv(n, 44);
      const VecF p = randv(n, 45);
      float* de = m.f32(e, off);
      m.cpu->ema(e.data(), p.data(), n, 0.9999f);
      m.gpu->ema(de, m.f32(p, off), n, 0.9999f);
      compare("ema " + tag, m.get_f32(de, n), e, 1e-6);
    }
  }
}

}  // namespace
