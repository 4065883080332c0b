// oneDNN bf16 matmul at the shapes of the CPU bf16 mode (docs/cpu_bf16.md, "On AMX: dense
// operands"): which kernel oneDNN picks (impl_info_str: brg:avx512_core_amx_bf16,
// brg:avx512_core_bf16, gemm:jit) and its thread CPU time per call, one thread, best of --rounds.
// Attention's per-head products (U-ViT-S/2: 257 tokens, 8 heads of 64, query blocks of 128) with
// their operands strided as in qkv (3 x 512 apart) against dense copies; U-ViT-S/2's linears
// (M = 8 x 257) with the weights plain as Network stores them, pre-reordered into oneDNN's
// blocked layout once (format any), and reordered on every call.
//   bf16_matmul_bench [--rounds N]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <oneapi/dnnl/dnnl.hpp>
#include <vector>

namespace {

using dt = dnnl::memory::data_type;
using dims = dnnl::memory::dims;
using md = dnnl::memory::desc;

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

enum class Weights { plain, reordered_once, reordered_each_call };

struct Case {
  const char* name;
  bool ta, tb;
  int M, N, K, lda, ldb, ldc;
  float alpha, beta;
  dt c_type;
  Weights w = Weights::plain;
};

void run(const Case& c, int rounds) {
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream s(eng);
  const md a({c.M, c.K}, dt::bf16, c.ta ? dims{1, c.lda} : dims{c.lda, 1});
  const md b({c.K, c.N}, dt::bf16, c.tb ? dims{1, c.ldb} : dims{c.ldb, 1});
  const md cd({c.M, c.N}, c.c_type, dims{c.ldc, 1});
  const md b_any({c.K, c.N}, dt::bf16, dnnl::memory::format_tag::any);
  dnnl::primitive_attr attr;
  if (c.alpha != 1.f) attr.set_output_scales(0, {c.alpha});
  if (c.beta != 0.f) {
    dnnl::post_ops po;
    po.append_sum(c.beta);
    attr.set_post_ops(po);
  }
  const dnnl::matmul::primitive_desc pd(
      dnnl::matmul::desc(a, c.w == Weights::plain ? b : b_any, cd), attr, eng);
  const dnnl::matmul mm(pd);
  // 1.0 everywhere: the time does not depend on the values.
  std::vector<uint16_t> A(size_t(c.ta ? c.K : c.M) * c.lda, 0x3f80),
      B(size_t(c.tb ? c.N : c.K) * c.ldb, 0x3f80);
  std::vector<char> C(size_t(c.M) * c.ldc * (c.c_type == dt::f32 ? 4 : 2));
  dnnl::memory am(a, eng, A.data()), bm(b, eng, B.data()), cm(cd, eng, C.data());
  dnnl::memory wm = bm;
  dnnl::reorder to_blocked;
  if (c.w != Weights::plain) {
    wm = dnnl::memory(pd.weights_desc(), eng);
    to_blocked = dnnl::reorder(bm, wm);
    to_blocked.execute(s, bm, wm);
  }
  auto call = [&] {
    if (c.w == Weights::reordered_each_call) to_blocked.execute(s, bm, wm);
    mm.execute(s, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, cm}});
  };
  call();  // first call: JIT and page faults
  s.wait();
  const double flop = 2.0 * c.M * c.N * c.K;
  const int reps = flop > 1e9 ? 3 : flop > 1e8 ? 10 : 100;
  double best = 1e30;
  for (int r = 0; r < rounds; ++r) {
    const double t0 = thread_cpu_seconds();
    for (int i = 0; i < reps; ++i) call();
    s.wait();
    const double t = (thread_cpu_seconds() - t0) / reps;
    if (t < best) best = t;
  }
  std::printf("%-36s %-26s %10.1f %8.0f\n", c.name, pd.impl_info_str(), best * 1e6,
              flop / best * 1e-9);
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 5;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--rounds") && i + 1 < argc) {
      rounds = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: bf16_matmul_bench [--rounds N]\n");
      return 2;
    }
  }
  if (rounds < 1) {
    std::fprintf(stderr, "bf16_matmul_bench: --rounds must be at least 1\n");
    return 2;
  }
  const float sc = 0.125f;  // 1/sqrt(64)
  const int L = 257, Dh = 64, ld3 = 1536, D = 512, M = 8 * 257;
  const Case cases[] = {
      // attention, one query block of 128 rows
      {"S = sc Q K^T, strided q, k", false, true, 128, L, Dh, ld3, ld3, L, sc, 0, dt::f32},
      {"S = Q K^T (no scale), strided", false, true, 128, L, Dh, ld3, ld3, L, 1, 0, dt::f32},
      {"S = sc Q K^T, dense", false, true, 128, L, Dh, Dh, Dh, L, sc, 0, dt::f32},
      {"O = P V, strided v", false, false, 128, Dh, L, L, ld3, Dh, 1, 0, dt::f32},
      {"O = P V, dense", false, false, 128, Dh, L, L, Dh, Dh, 1, 0, dt::f32},
      {"dV += P^T dO, strided dO", true, false, L, Dh, 128, L, D, Dh, 1, 1, dt::f32},
      {"dV += P^T dO, dense", true, false, L, Dh, 128, L, Dh, Dh, 1, 1, dt::f32},
      {"dK += sc dS^T Q, strided q", true, false, L, Dh, 128, L, ld3, Dh, sc, 1, dt::f32},
      {"dK += sc dS^T Q, dense", true, false, L, Dh, 128, L, Dh, Dh, sc, 1, dt::f32},
      // U-ViT-S/2 linears, bf16 out (x W^T), and a column half of skip_linear's weight
      {"qkv x W^T, W plain", false, true, M, 3 * D, D, D, D, 3 * D, 1, 0, dt::bf16},
      {"qkv, W reordered once", false, true, M, 3 * D, D, D, D, 3 * D, 1, 0, dt::bf16,
       Weights::reordered_once},
      {"qkv, W reordered every call", false, true, M, 3 * D, D, D, D, 3 * D, 1, 0, dt::bf16,
       Weights::reordered_each_call},
      {"fc1 x W^T, W plain", false, true, M, 4 * D, D, D, D, 4 * D, 1, 0, dt::bf16},
      {"fc1, W reordered once", false, true, M, 4 * D, D, D, D, 4 * D, 1, 0, dt::bf16,
       Weights::reordered_once},
      {"fc1, W reordered every call", false, true, M, 4 * D, D, D, D, 4 * D, 1, 0, dt::bf16,
       Weights::reordered_each_call},
      {"fc2 dx = dy W, W plain", false, false, M, 4 * D, D, D, 4 * D, 4 * D, 1, 0, dt::bf16},
      {"fc2 dx, W reordered every call", false, false, M, 4 * D, D, D, 4 * D, 4 * D, 1, 0, dt::bf16,
       Weights::reordered_each_call},
      {"fc1 wgrad dW += dy^T x (fp32)", true, false, 4 * D, D, M, 4 * D, D, D, 1, 1, dt::f32},
      {"skip half x W^T, W dense", false, true, M, D, D, D, D, D, 1, 0, dt::bf16},
      {"skip half, W strided (ld 1024)", false, true, M, D, D, D, 2 * D, D, 1, 0, dt::bf16},
  };
  std::printf("%-36s %-26s %10s %8s   (thread CPU, one thread, best of %d)\n", "product",
              "oneDNN kernel", "us/call", "GFLOP/s", rounds);
  for (const Case& c : cases) run(c, rounds);
  return 0;
}
