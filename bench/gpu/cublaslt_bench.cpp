// cuBLASLt at U-ViT's exact GEMM shapes (docs/gpu.md, "Device checks"; issue 17 item 3):
// for U-ViT-H/2 (D 1152, 258 tokens) and U-ViT-S/2 (D 512, 257 tokens) at batch 128, every
// Linear of a block (qkv, proj, fc1, fc2, the skip linear) forward, input gradient (dgrad) and
// weight gradient (wgrad), called through the backend's own GEMM context
// (src/backend/cuda/gemm.cpp: the same layouts, transposes, dtypes, bias/residual epilogues and
// alignment preferences as src/models/layers.cpp makes them). Per GEMM: the heuristic's first
// algorithm (what the backend uses by default) against the best of its top 16 timed
// (UVIT_CUBLASLT_AUTOTUNE's choice), each timed as a steady loop of calls, in TFLOP/s (2 M N K per
// call). Then cuBLASLt's GELU epilogue against the exact erf GELU and the tanh approximation (max
// abs difference), which settles whether the fc1 epilogue can carry U-ViT's GELU.
//
// Usage: uvit_cublaslt_bench [--reps N] [--batch B] [--json FILE] [--only h|s]
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "backend/algo_autotune.hpp"
#include "backend/cuda/gemm.hpp"
#include "uvit/array.hpp"
#include "uvit/error.hpp"

namespace {

void cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) uvit::fail("cublaslt_bench: ", what, ": ", cudaGetErrorString(e));
}
void blas_ok(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) uvit::fail("cublaslt_bench: ", what, ": status ", int(s));
}

struct DevBuf {
  void* p = nullptr;
  explicit DevBuf(size_t bytes) { cuda_ok(cudaMalloc(&p, bytes), "cudaMalloc"); }
  ~DevBuf() { cudaFree(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
};

// One Linear of a block: y[M, out] = x[M, in] w^T (+ bias) (+ residual), w rows ldw apart.
struct Layer {
  const char* name;
  int out, in, ldw;
  bool bias;
  int residual;  // 0 none, 1 a separate tensor (the stream), 2 y itself (the skip's second half)
};

struct Net {
  const char* name;
  int D, tokens;
};

// Milliseconds per call of f, the mean over `reps` calls after 3 untimed ones.
template <class F>
double time_ms(F&& f, int reps) {
  for (int i = 0; i < 3; ++i) f();
  cudaEvent_t a, b;
  cuda_ok(cudaEventCreate(&a), "cudaEventCreate");
  cuda_ok(cudaEventCreate(&b), "cudaEventCreate");
  cuda_ok(cudaEventRecord(a, 0), "cudaEventRecord");
  for (int i = 0; i < reps; ++i) f();
  cuda_ok(cudaEventRecord(b, 0), "cudaEventRecord");
  cuda_ok(cudaEventSynchronize(b), "cudaEventSynchronize");
  float ms = 0;
  cuda_ok(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return double(ms) / reps;
}

// Uniform bf16 values in [-1, 1) (cheap LCG: the data only has to look like activations to the
// tensor cores' power draw, not be random in any finer sense).
std::vector<uint16_t> random_bf16(size_t n) {
  std::vector<uint16_t> v(n);
  uint32_t x = 12345u;
  for (auto& h : v) {
    x = x * 1664525u + 1013904223u;
    h = uvit::float_to_bf16(float(int(x >> 9) - (1 << 22)) / float(1 << 22));
  }
  return v;
}

// cuBLASLt's GELU epilogue against the same GEMM's BIAS epilogue passed through erf and tanh GELU
// on the host: which one does the epilogue compute? A/B in `ab` (fp32, or bf16 as the backend's
// GEMMs), C/D and the bias fp32 so that output rounding cannot hide the difference (the two GELUs
// differ by up to ~1e-3 on [-3, 3]). Returns false (with a line saying why) if cuBLASLt refuses.
bool gelu_epilogue_check(FILE* json, cudaDataType ab) {
  const int M = 512, N = 384, K = 256;  // row-major y[M,N] = x[M,K] w[N,K]^T + b
  const size_t es = ab == CUDA_R_32F ? 4 : 2;
  std::vector<float> x(size_t(M) * K), w(size_t(N) * K), b(N);
  uint32_t s = 7u;
  auto u = [&] {
    s = s * 1664525u + 1013904223u;
    return 3.f * (float(s >> 8) / float(1 << 24) - 0.5f);  // [-1.5, 1.5): GELU's curved part
  };
  for (auto& v : x) v = u();
  for (auto& v : w) v = u() / 8.f;
  for (auto& v : b) v = u();
  auto upload = [&](void* dst, const std::vector<float>& v) {
    if (ab == CUDA_R_32F)
      return cuda_ok(cudaMemcpy(dst, v.data(), v.size() * 4, cudaMemcpyHostToDevice), "upload");
    std::vector<uint16_t> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) h[i] = uvit::float_to_bf16(v[i]);
    cuda_ok(cudaMemcpy(dst, h.data(), h.size() * 2, cudaMemcpyHostToDevice), "upload");
  };
  DevBuf dx(x.size() * es), dw(w.size() * es), db(b.size() * 4), dy(size_t(M) * N * 4);
  upload(dx.p, x);
  upload(dw.p, w);
  cuda_ok(cudaMemcpy(db.p, b.data(), b.size() * 4, cudaMemcpyHostToDevice), "upload");
  const char* type = ab == CUDA_R_32F ? "fp32" : "bf16 A/B, fp32 C/D";
  cublasLtHandle_t lt;
  blas_ok(cublasLtCreate(&lt), "cublasLtCreate");
  cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
  auto run_epi = [&](cublasLtEpilogue_t epi, std::vector<float>& y) {
    cublasLtMatmulDesc_t d;
    blas_ok(cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F), "DescCreate");
    const cublasOperation_t t = CUBLAS_OP_T, n = CUBLAS_OP_N;
    const cudaDataType bias_type = CUDA_R_32F;
    const void* bp = db.p;
    blas_ok(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t), "TRANSA");
    blas_ok(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSB, &n, sizeof n), "TRANSB");
    blas_ok(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi),
            "EPILOGUE");
    blas_ok(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp, sizeof bp),
            "BIAS_POINTER");
    blas_ok(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                           sizeof bias_type),
            "BIAS_DATA_TYPE");
    // Column-major: y^T[N,M] = w[N,K] (stored [K,N]^T) x^T[K,M].
    cublasLtMatrixLayout_t la, lb, lc;
    blas_ok(cublasLtMatrixLayoutCreate(&la, ab, K, N, K), "LayoutA");
    blas_ok(cublasLtMatrixLayoutCreate(&lb, ab, K, M, K), "LayoutB");
    blas_ok(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, N, M, N), "LayoutC");
    const float one = 1.f, zero = 0.f;
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmul(lt, d, &one, dw.p, la, dx.p, lb, &zero, dy.p, lc, dy.p, lc, nullptr,
                          nullptr, 0, 0);
    y.resize(size_t(M) * N);
    if (st == CUBLAS_STATUS_SUCCESS)
      cuda_ok(cudaMemcpy(y.data(), dy.p, y.size() * 4, cudaMemcpyDeviceToHost), "download");
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(d);
  };
  std::vector<float> z, g;
  run_epi(CUBLASLT_EPILOGUE_BIAS, z);
  run_epi(CUBLASLT_EPILOGUE_GELU_BIAS, g);
  cublasLtDestroy(lt);
  if (st != CUBLAS_STATUS_SUCCESS) {
    std::printf("\ncuBLASLt GELU_BIAS epilogue (%s): not supported here (status %d)\n", type,
                int(st));
    return false;
  }
  double d_erf = 0, d_tanh = 0, erf_vs_tanh = 0;
  for (size_t i = 0; i < z.size(); ++i) {
    const double v = z[i];
    const double ge = 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
    const double gt =
        0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
    d_erf = std::max(d_erf, std::fabs(g[i] - ge));
    d_tanh = std::max(d_tanh, std::fabs(g[i] - gt));
    erf_vs_tanh = std::max(erf_vs_tanh, std::fabs(ge - gt));
  }
  const char* verdict = d_tanh < 0.1 * d_erf ? "tanh" : d_erf < 0.1 * d_tanh ? "erf" : "unclear";
  std::printf(
      "\ncuBLASLt GELU_BIAS epilogue (%s, %dx%dx%d): max |epilogue - erf GELU| %.3g, "
      "max |epilogue - tanh GELU| %.3g (erf vs tanh differ by up to %.3g here): it computes %s "
      "GELU\n",
      type, M, N, K, d_erf, d_tanh, erf_vs_tanh, verdict);
  if (json)
    std::fprintf(json,
                 "{\"what\": \"gelu_epilogue\", \"types\": \"%s\", \"max_abs_vs_erf\": %.6g, "
                 "\"max_abs_vs_tanh\": %.6g, \"erf_vs_tanh\": %.6g, \"computes\": \"%s\"}\n",
                 type, d_erf, d_tanh, erf_vs_tanh, verdict);
  return true;
}

int run(int argc, char** argv) {
  int reps = 20, batch = 128;
  std::string json_path, only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      UVIT_CHECK(i + 1 < argc, "cublaslt_bench: ", a, " needs a value");
      return argv[++i];
    };
    if (a == "--reps")
      reps = std::atoi(next().c_str());
    else if (a == "--batch")
      batch = std::atoi(next().c_str());
    else if (a == "--json")
      json_path = next();
    else if (a == "--only")
      only = next();
    else
      uvit::fail("cublaslt_bench: unknown option '", a,
                 "' (expected --reps N, --batch B, --json FILE, --only h|s)");
  }
  UVIT_CHECK(reps >= 1 && batch >= 1, "cublaslt_bench: --reps and --batch must be >= 1");
  UVIT_CHECK(only.empty() || only == "h" || only == "s", "cublaslt_bench: --only takes h or s");
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0)
    uvit::fail("cublaslt_bench: no CUDA device");
  cudaDeviceProp prop{};
  cuda_ok(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  FILE* json = json_path.empty() ? nullptr : std::fopen(json_path.c_str(), "a");
  UVIT_CHECK(json_path.empty() || json, json_path, ": cannot open for appending");
  std::printf("cuBLASLt at U-ViT's GEMM shapes on %s (cuBLASLt %zu), bf16, batch %d, %d reps\n",
              prop.name, cublasLtGetVersion(), batch, reps);

  std::vector<Net> nets;
  if (only != "s") nets.push_back({"uvit_h2", 1152, 258});
  if (only != "h") nets.push_back({"uvit_s2", 512, 257});
  // The largest operand: fc1's output / fc2's input [M, 4D].
  size_t max_elems = 0;
  for (const Net& n : nets) max_elems = std::max(max_elems, size_t(batch) * n.tokens * 4 * n.D);
  const std::vector<uint16_t> host = random_bf16(max_elems);
  // dgrad writes dx, not x: no operand is ever fed its own output, so values stay finite.
  DevBuf x(max_elems * 2), w(max_elems * 2), y(max_elems * 2), r(max_elems * 2), dx(max_elems * 2),
      b(16384 * 2), gw(size_t(4) * 1152 * 2 * 1152 * 4);
  for (void* p : {x.p, w.p, y.p, r.p})
    cuda_ok(cudaMemcpy(p, host.data(), max_elems * 2, cudaMemcpyHostToDevice), "upload");
  cuda_ok(cudaMemcpy(b.p, host.data(), 16384 * 2, cudaMemcpyHostToDevice), "upload");
  cuda_ok(cudaMemset(gw.p, 0, size_t(4) * 1152 * 2 * 1152 * 4), "cudaMemset");

  auto plain = uvit::cuda::make_gemm_context(0, true, false, 0);
  auto tuned = uvit::cuda::make_gemm_context(0, true, false, 16);
  std::printf(
      "\n| net | gemm | pass | M | N | K | heuristic ms | TFLOP/s | tuned ms | TFLOP/s | "
      "gain | pick | single-run heuristic / best ms |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  double total_plain = 0, total_tuned = 0;
  for (const Net& n : nets) {
    const int D = n.D, M = batch * n.tokens;
    const Layer layers[] = {{"qkv", 3 * D, D, D, false, 0},
                            {"proj", D, D, D, true, 1},
                            {"fc1", 4 * D, D, D, true, 0},
                            {"fc2", D, 4 * D, 4 * D, true, 1},
                            {"skip", D, D, 2 * D, true, 2}};
    for (const Layer& l : layers) {
      for (const char* pass : {"fwd", "dgrad", "wgrad"}) {
        // Row-major shapes as the backend sees them (layers.cpp linear_fwd / linear_bwd).
        int gm = M, gn = l.out, gk = l.in;
        if (std::strcmp(pass, "dgrad") == 0) gm = M, gn = l.in, gk = l.out;
        if (std::strcmp(pass, "wgrad") == 0) gm = l.out, gn = l.in, gk = M;
        auto call = [&](uvit::cuda::GemmContext& c) {
          if (std::strcmp(pass, "fwd") == 0) {
            const void* res = l.residual == 1 ? r.p : l.residual == 2 ? y.p : nullptr;
            c.linear(x.p, l.in, w.p, l.ldw, l.bias ? b.p : nullptr, res, y.p, l.out, M, l.out,
                     l.in);
          } else if (std::strcmp(pass, "dgrad") == 0) {
            c.gemm(false, false, M, l.in, l.out, 1.f, y.p, l.out, w.p, l.ldw, 0.f, dx.p, l.in);
          } else {
            c.gemm_wgrad(l.out, l.in, M, y.p, l.out, x.p, l.in, static_cast<float*>(gw.p), l.ldw);
          }
        };
        const size_t before = tuned->autotuner()->keys().size();
        const double tp = time_ms([&] { call(*plain); }, reps);
        const double tt = time_ms([&] { call(*tuned); }, reps);  // its first call tunes
        const auto& keys = tuned->autotuner()->keys();
        std::string pick = "-", single = "-";
        if (keys.size() > before) {
          const uvit::AutotuneChoice& c = tuned->autotuner()->at(keys.back());
          pick = uvit::cat("#", c.winner, " of ", c.ms.size());
          char buf[64];
          std::snprintf(buf, sizeof buf, "%.4f / %.4f", c.heuristic_ms(), c.best_ms());
          single = buf;
        }
        const double flop = 2.0 * gm * gn * double(gk);
        total_plain += tp;
        total_tuned += tt;
        std::printf(
            "| %s | %s | %s | %d | %d | %d | %.4f | %.1f | %.4f | %.1f | %+.1f%% | %s | %s |\n",
            n.name, l.name, pass, gm, gn, gk, tp, flop / tp / 1e9, tt, flop / tt / 1e9,
            100.0 * (tp - tt) / tp, pick.c_str(), single.c_str());
        if (json)
          std::fprintf(json,
                       "{\"what\": \"gemm\", \"net\": \"%s\", \"gemm\": \"%s\", \"pass\": \"%s\", "
                       "\"M\": %d, \"N\": %d, \"K\": %d, \"heuristic_ms\": %.6g, "
                       "\"heuristic_tflops\": %.6g, \"tuned_ms\": %.6g, \"tuned_tflops\": %.6g, "
                       "\"pick\": \"%s\"}\n",
                       n.name, l.name, pass, gm, gn, gk, tp, flop / tp / 1e9, tt, flop / tt / 1e9,
                       pick.c_str());
      }
    }
  }
  std::printf("\nall rows: heuristic %.3f ms, tuned %.3f ms (%+.1f%%)\n", total_plain, total_tuned,
              100.0 * (total_plain - total_tuned) / total_plain);
  const bool gelu = gelu_epilogue_check(json, CUDA_R_32F) || gelu_epilogue_check(json, CUDA_R_16BF);
  if (json) std::fclose(json);
  return gelu ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
