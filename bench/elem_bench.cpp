// CPU time of the CPU backend's element-wise kernels, fp32 mode against bf16 mode, on one thread,
// at U-ViT-S/2 training shapes (batch 8: M = 8 x 257 tokens, D = 512, MLP 2048; the adaLN and token
// kernels at DiT/U-ViT shapes with 256 patches; MDT's masked-pass row moves, per-row calls against
// one move_rows, LaVin's per-sample joint-sequence copies against one copy_3d, U-ViT's per-sample
// time-token bias gradient against one bias_grad_strided; attention with
// and without MDT's relative position bias at MDT-S/2's, 8 x 256 tokens, 6 heads of 64). Thread CPU
// time, best of --reps runs, so other processes on a shared machine barely change it
// (docs/benchmarks.md, "bf16 on the CPU").
//   elem_bench [--reps N] [--filter SUBSTRING]
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "uvit/backend.hpp"

namespace {

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// Act buffers sized in floats (big enough for either mode), filled through to_act.
struct Buffers {
  explicit Buffers(uvit::Backend& b) : be(b) {}
  uvit::Backend& be;
  std::vector<std::vector<float>> store;
  std::mt19937 rng{7};
  float* act(size_t n) {
    std::vector<float> host(n);
    std::normal_distribution<float> nd;
    for (auto& v : host) v = nd(rng);
    float* p = alloc(n);
    be.to_act(host.data(), p, n);
    return p;
  }
  float* f32(size_t n, float v = 0.5f) {
    float* p = alloc(n);
    std::fill(p, p + n, v);
    return p;
  }
  // Each buffer at its own offset modulo 4 KiB (a multiple of 64 bytes), so that no two streams
  // of a kernel alias in the L1 (4K aliasing): otherwise timings depend on where the heap happened
  // to put them (seen as a 40 % swing of unchanged kernels between runs).
  float* alloc(size_t n) {
    store.emplace_back(n + 2048);
    const uintptr_t a = reinterpret_cast<uintptr_t>(store.back().data());
    const uintptr_t page = (a + 4095) & ~uintptr_t(4095);
    return reinterpret_cast<float*>(page + (store.size() * 576) % 4096);
  }
};

// Best times of f and g over reps runs each, alternating, so that both see the same machine load.
std::pair<double, double> best_of(int reps, const std::function<void()>& f,
                                  const std::function<void()>& g) {
  f();  // warm: page faults, caches
  g();
  double bf = 1e30, bg = 1e30;
  for (int r = 0; r < reps; ++r) {
    double t0 = thread_cpu_seconds();
    f();
    bf = std::min(bf, thread_cpu_seconds() - t0);
    t0 = thread_cpu_seconds();
    g();
    bg = std::min(bg, thread_cpu_seconds() - t0);
  }
  return {bf, bg};
}

using Op = std::function<std::function<void()>(uvit::Backend&, Buffers&)>;

}  // namespace

int main(int argc, char** argv) {
  int reps = 15;
  std::string filter;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc)
      reps = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--filter") && i + 1 < argc)
      filter = argv[++i];
    else {
      std::fprintf(stderr, "usage: elem_bench [--reps N] [--filter SUBSTRING]\n");
      return 2;
    }
  }
  omp_set_num_threads(1);
  const int B = 8, L = 256, E = 1, Tn = E + L, M = B * Tn, D = 512, H = 2048;
  const size_t MD = size_t(M) * D, MH = size_t(M) * H;
  std::vector<std::pair<std::string, Op>> ops = {
      {"layernorm_fwd  M x 512",
       [&](uvit::Backend& be, Buffers& b) -> std::function<void()> {
         float *x = b.act(MD), *y = b.act(MD), *w = b.f32(D, 1.1f), *bb = b.f32(D, 0.1f);
         float *mu = b.f32(M), *rs = b.f32(M);
         return [=, &be] { be.layernorm_fwd(x, w, bb, y, mu, rs, M, D, 1e-6f); };
       }},
      {"layernorm_bwd  M x 512",
       [&](uvit::Backend& be, Buffers& b) -> std::function<void()> {
         float *x = b.act(MD), *y = b.act(MD), *w = b.f32(D, 1.1f), *bb = b.f32(D, 0.1f);
         float *mu = b.f32(M), *rs = b.f32(M), *dy = b.act(MD), *dx = b.act(MD);
         float *dw = b.f32(D), *db = b.f32(D);
         be.layernorm_fwd(x, w, bb, y, mu, rs, M, D, 1e-6f);
         return [=, &be] { be.layernorm_bwd(dy, x, w, mu, rs, dx, dw, db, M, D); };
       }},
      {"gelu_fwd       M x 2048",
       [&](uvit::Backend& be, Buffers& b) -> std::function<void()> {
         float *x = b.act(MH), *y = b.act(MH);
         return [=, &be] { be.gelu_fwd(x, y, MH); };
       }},
      {"gelu_bwd       M x 2048",
       [&](uvit::Backend& be, Buffers& b) -> std::function<void()> {
         float *x = b.act(MH), *dy = b.act(MH), *dx = b.act(MH);
         return [=, &be] { be.gelu_bwd(dy, x, dx, MH); };
       }},
      {"gelu_tanh_fwd  M x 2048",
       [&](uvit::Backend& be, Buffers& b) -> std::function<void()> {
         float *x = b.act(MH), *y = b.act(MH);
         return [=, &be] { be.gelu_tanh_fwd(x, y, MH); };
       }},
      {"add_bias       M x 2048",
       [&](uvit::Backend& be, Buffers& b) -> std::function<void()> {
         float *y = b.act(MH), *bias = b.act(H);
         return [=, &be] { be.add_bias(y, bias, M, H); };
       }},
      // The MLP's first linear with its bias: the backend's linear (bf16: bias in the matmul's
      // output) against the generic gemm then add_bias (docs/benchmarks.md, "AMX Xeon,
      // 2026-12-06 (2)").
      {"linear+bias    M x 512 x 2048",
       [&](uvit::Backend& be, Buffers& b) -> std::function<void()> {
         float *x = b.act(MD), *w = b.act(size_t(H) * D), *y = b.act(MH), *bias = b.act(H);
         return [=, &be] { be.linear(x, D, w, D, bias, nullptr, y, H, M, H, D); };
       }},
      {"gemm, add_bias M x 512 x 2048",
       [&](uvit::Backend& be, Buffers& b) -> std::function<void()> {
         float *x = b.act(MD), *w = b.act(size_t(H) * D), *y = b.act(MH), *bias = b.act(H);
         return [=, &be] { be.Backend::linear(x, D, w, D, bias, nullptr, y, H, M, H, D); };
       }},
      {"bias_grad      M x 2048",
       [&](uvit::Backend& be, Buffers& b) -> std::function<void()> {
         float *dy = b.act(MH), *db = b.f32(H);
         return [=, &be] { be.bias_grad(dy, db, M, H); };
       }},
      {"axpy_act       M x 512",
       [&](uvit::Backend& be, Buffers& b) -> std::function<void()> {
         float *y = b.act(MD), *x = b.act(MD);
         return [=, &be] { be.axpy_act(y, x, 1.f, MD); };
       }},
      {"to_act         M x 512",
       [&](uvit::Backend& be, Buffers& b) -> std::function<void()> {
         float *x = b.f32(MD), *y = b.act(MD);
         return [=, &be] { be.to_act(x, y, MD); };
       }},
      {"from_act       M x 512",
       [&](uvit::Backend& be, Buffers& b) -> std::function<void()> {
         float *x = b.act(MD), *y = b.f32(MD);
         return [=, &be] { be.from_act(x, y, MD); };
       }},
      {"modulate_fwd   M x 512",
       [&](uvit::Backend& be, Buffers& b) -> std::function<void()> {
         float *x = b.act(MD), *y = b.act(MD), *m = b.act(size_t(B) * 6 * D);
         return [=, &be] { be.modulate_fwd(x, m, m + D, 6 * D, y, B, Tn, D); };
       }},
      {"modulate_bwd   M x 512",
       [&](uvit::Backend& be, Buffers& b) -> std::function<void()> {
         float *x = b.act(MD), *dy = b.act(MD), *dx = b.act(MD), *m = b.act(size_t(B) * 6 * D);
         float* dm = b.act(size_t(B) * 6 * D);
         return [=, &be] { be.modulate_bwd(dy, x, m + D, 6 * D, dx, dm, dm + D, B, Tn, D); };
       }},
      {"gate_fwd       M x 512",
       [&](uvit::Backend& be, Buffers& b) -> std::function<void()> {
         float *x = b.act(MD), *y = b.act(MD), *o = b.act(MD), *m = b.act(size_t(B) * 6 * D);
         return [=, &be] { be.gate_fwd(x, y, m + 2 * D, 6 * D, o, B, Tn, D); };
       }},
      {"gate_bwd       M x 512",
       [&](uvit::Backend& be, Buffers& b) -> std::function<void()> {
         float *g = b.act(MD), *y = b.act(MD), *dy = b.act(MD), *m = b.act(size_t(B) * 6 * D);
         float* dm = b.act(size_t(B) * 6 * D);
         return [=, &be] { be.gate_bwd(g, y, m + 2 * D, 6 * D, dy, dm + 2 * D, B, Tn, D); };
       }},
      {"tokens_fwd     M x 512",
       [&](uvit::Backend& be, Buffers& b) -> std::function<void()> {
         float *ex = b.act(size_t(B) * E * D), *p = b.act(size_t(B) * L * D), *pos = b.f32(Tn * D);
         float* seq = b.act(MD);
         return [=, &be] { be.tokens_fwd(ex, p, pos, seq, B, E, L, D); };
       }},
      {"tokens_bwd     M x 512",
       [&](uvit::Backend& be, Buffers& b) -> std::function<void()> {
         float *dex = b.act(size_t(B) * E * D), *dp = b.act(size_t(B) * L * D);
         float *dpos = b.f32(Tn * D), *dseq = b.act(MD);
         return [=, &be] { be.tokens_bwd(dseq, dex, dp, dpos, B, E, L, D); };
       }},
  };
  // MDT's masked-pass row moves (8 x 179 kept of 256 tokens, width 512): the per-row copy_act /
  // axpy_act calls mdt.cpp made before move_rows, against one move_rows call.
  const int keep = 179;
  auto kept = std::make_shared<std::vector<int32_t>>();
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < keep; ++i) kept->push_back(b * L + (i * 37) % L);  // 37 is prime to 256
  auto rows = [=](bool one_call, bool add) -> Op {
    return [=](uvit::Backend& be, Buffers& b) -> std::function<void()> {
      float *full = b.act(size_t(B) * L * D), *part = b.act(size_t(B) * keep * D);
      const int32_t* ids = kept->data();
      if (one_call)
        return [=, &be] { be.move_rows(full, ids, part, nullptr, long(B) * keep, D, add); };
      return [=, &be] {
        for (int i = 0; i < B * keep; ++i) {
          float* d = be.act_at(full, size_t(ids[i]) * D);
          const float* s = be.act_at(part, size_t(i) * D);
          if (add)
            be.axpy_act(d, s, 1.f, D);
          else
            be.copy_act(d, s, D);
        }
      };
    };
  };
  ops.push_back({"rows per call  8x179 x 512", rows(false, false)});
  ops.push_back({"move_rows      8x179 x 512", rows(true, false)});
  ops.push_back({"rows per call  += (axpy)", rows(false, true)});
  ops.push_back({"move_rows      +=", rows(true, true)});
  // LaVin's joint sequence: q of one stream (8 x 256 rows of 512) into its rows of the joint qkv
  // (8 x 320 rows, 3 x 512 wide), one copy_act_2d per sample (before) against one copy_3d.
  auto joint = [=](bool one_call) -> Op {
    return [=](uvit::Backend& be, Buffers& b) -> std::function<void()> {
      const long Nj = 320, ld = 3 * D;
      float *qkv = b.act(size_t(B) * Nj * ld), *q = b.act(size_t(B) * L * D);
      float* j0 = be.act_at(qkv, size_t(Nj - L) * ld);
      if (one_call) return [=, &be] { be.copy_3d(j0, ld, Nj * ld, q, D, long(L) * D, B, L, D); };
      return [=, &be] {
        for (int i = 0; i < B; ++i)
          be.copy_act_2d(be.act_at(j0, size_t(i) * Nj * ld), ld, be.act_at(q, size_t(i) * L * D), D,
                         L, D);
      };
    };
  };
  ops.push_back({"2-D per sample 8x256 x 512", joint(false)});
  ops.push_back({"copy_3d        8x256 x 512", joint(true)});
  // U-ViT's time token: the time MLP's bias gradient over the first D of each sample's 2 extra
  // tokens (rows 2 x 512 apart), one bias_grad per sample (before) against one bias_grad_strided.
  auto time_token = [=](bool one_call) -> Op {
    return [=](uvit::Backend& be, Buffers& b) -> std::function<void()> {
      const long ld = 2 * D;
      float *dy = b.act(size_t(B) * ld), *db = b.f32(D);
      if (one_call) return [=, &be] { be.bias_grad_strided(dy, ld, db, B, D); };
      return [=, &be] {
        for (int i = 0; i < B; ++i) be.bias_grad(be.act_at(dy, size_t(i) * ld), db, 1, D);
      };
    };
  };
  ops.push_back({"bias_grad per sample 8 x 512", time_token(false)});
  ops.push_back({"bias_grad_strided    8 x 512", time_token(true)});
  // Attention at MDT-S/2 shapes, plain and with the relative position bias (its 31 x 31 + 3 rows).
  const int AH = 6, ADh = 64, AD = AH * ADh, g = 16, R = (2 * g - 1) * (2 * g - 1) + 3;
  const size_t QKV = size_t(B) * L * 3 * AD, O = size_t(B) * L * AD, LSE = size_t(B) * AH * L;
  auto index = std::make_shared<std::vector<int32_t>>(size_t(L) * L);
  for (int i = 0; i < L; ++i)
    for (int j = 0; j < L; ++j)
      (*index)[size_t(i) * L + j] = (i / g - j / g + g - 1) * (2 * g - 1) + (i % g - j % g + g - 1);
  auto attn = [&](bool bias, bool bwd) -> Op {
    return [=](uvit::Backend& be, Buffers& b) -> std::function<void()> {
      float *qkv = b.act(QKV), *out = b.act(O), *lse = b.f32(LSE), *dout = b.act(O);
      float *dqkv = b.act(QKV), *dtable = b.f32(size_t(R) * AH);
      uvit::Backend::AttnBias ab;
      ab.table = b.f32(size_t(R) * AH, 0.01f);
      ab.index = index->data();
      ab.R = R;
      ab.Lf = L;
      const float sc = 0.125f;
      if (bias)
        be.attention_bias_fwd(qkv, ab, out, lse, B, L, AH, ADh, sc);
      else
        be.attention_fwd(qkv, out, lse, B, L, AH, ADh, sc);
      if (!bwd && bias)
        return [=, &be] { be.attention_bias_fwd(qkv, ab, out, lse, B, L, AH, ADh, sc); };
      if (!bwd) return [=, &be] { be.attention_fwd(qkv, out, lse, B, L, AH, ADh, sc); };
      if (bias)
        return [=, &be] {
          be.attention_bias_bwd(dout, qkv, out, lse, ab, dqkv, dtable, B, L, AH, ADh, sc);
        };
      return [=, &be] { be.attention_bwd(dout, qkv, out, lse, dqkv, B, L, AH, ADh, sc); };
    };
  };
  ops.push_back({"attention_fwd  8x256, 6x64", attn(false, false)});
  ops.push_back({"attn_bias_fwd  8x256, 6x64", attn(true, false)});
  ops.push_back({"attention_bwd  8x256, 6x64", attn(false, true)});
  ops.push_back({"attn_bias_bwd  8x256, 6x64", attn(true, true)});
  auto f32 = uvit::make_cpu_backend();
  auto bf = uvit::make_backend("cpu", "bf16");
  std::printf("%-24s %10s %10s %8s   (ms CPU, one thread, best of %d)\n", "op", "fp32", "bf16",
              "bf16 x", reps);
  for (const auto& [name, op] : ops) {
    if (!filter.empty() && name.find(filter) == std::string::npos) continue;
    Buffers b32(*f32), b16(*bf);
    const auto [t32, t16] = best_of(reps, op(*f32, b32), op(*bf, b16));
    std::printf("%-24s %10.3f %10.3f %8.2f\n", name.c_str(), 1e3 * t32, 1e3 * t16, t32 / t16);
  }
  return 0;
}
