// Token plumbing: patch im2col/col2im (the patch conv as a GEMM), sequence assembly with position
// embeddings, timestep and label embeddings, unpatchify. All memory-bound index shuffles.
#include <cmath>
#include <cstring>

#include "backend/cpu/cpu_backend.hpp"

namespace uvit {

void CpuBackend::patch_im2col(const float* x, float* cols, int B, int C, int S, int p) {
  const int g = S / p, L = g * g, P = C * p * p;
#pragma omp parallel for collapse(2) schedule(static) if (static_cast <long>(B) * L * P >= 32768)
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < g; ++i)
      for (int j = 0; j < g; ++j) {
        float* row = cols + (static_cast<size_t>(b) * L + i * g + j) * P;
        for (int c = 0; c < C; ++c)
          for (int u = 0; u < p; ++u) {
            const float* src = x + ((static_cast<size_t>(b) * C + c) * S + i * p + u) * S + j * p;
            std::memcpy(row + (c * p + u) * p, src, sizeof(float) * p);
          }
      }
}

void CpuBackend::patch_col2im(const float* cols, float* x, int B, int C, int S, int p) {
  // Patches tile the image exactly (stride == kernel), so this is a pure permutation back.
  const int g = S / p, L = g * g, P = C * p * p;
#pragma omp parallel for collapse(2) schedule(static) if (static_cast <long>(B) * L * P >= 32768)
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < g; ++i)
      for (int j = 0; j < g; ++j) {
        const float* row = cols + (static_cast<size_t>(b) * L + i * g + j) * P;
        for (int c = 0; c < C; ++c)
          for (int u = 0; u < p; ++u) {
            float* dst = x + ((static_cast<size_t>(b) * C + c) * S + i * p + u) * S + j * p;
            std::memcpy(dst, row + (c * p + u) * p, sizeof(float) * p);
          }
      }
}

void CpuBackend::tokens_fwd(const float* extras, const float* patches, const float* pos, float* seq,
                            int B, int E, int L, int D) {
  const int T = E + L;
#pragma omp parallel for collapse(2) schedule(static) if (static_cast <long>(B) * T * D >= 32768)
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      const float* src = t < E ? extras + (static_cast<size_t>(b) * E + t) * D
                               : patches + (static_cast<size_t>(b) * L + (t - E)) * D;
      const float* pr = pos + static_cast<size_t>(t) * D;
      float* dst = seq + (static_cast<size_t>(b) * T + t) * D;
#pragma omp simd
      for (int d = 0; d < D; ++d) dst[d] = src[d] + pr[d];
    }
}

void CpuBackend::tokens_bwd(const float* dseq, float* dextras, float* dpatches, float* dpos, int B,
                            int E, int L, int D) {
  const int T = E + L;
  // Each thread owns whole token positions t, so dpos[t] (summed over b) has a single writer.
#pragma omp parallel for schedule(static) if (static_cast <long>(B) * T * D >= 32768)
  for (int t = 0; t < T; ++t) {
    float* dp = dpos + static_cast<size_t>(t) * D;
    for (int b = 0; b < B; ++b) {
      const float* src = dseq + (static_cast<size_t>(b) * T + t) * D;
      float* dst = t < E ? (dextras ? dextras + (static_cast<size_t>(b) * E + t) * D : nullptr)
                         : dpatches + (static_cast<size_t>(b) * L + (t - E)) * D;
      if (dst) std::memcpy(dst, src, sizeof(float) * D);
#pragma omp simd
      for (int d = 0; d < D; ++d) dp[d] += src[d];
    }
  }
}

void CpuBackend::timestep_embedding(const float* t, float* out, int B, int D, int ldo) {
  // Mirrors the PyTorch fp32 sequence: exp(float(-ln 10000) * float(i) / half), args = t * f.
  const int half = D / 2;
  const float c = static_cast<float>(-std::log(10000.0));
  for (int b = 0; b < B; ++b) {
    float* o = out + static_cast<size_t>(b) * ldo;
    for (int i = 0; i < half; ++i) {
      const float f = std::exp(c * static_cast<float>(i) / static_cast<float>(half));
      const float a = t[b] * f;
      o[i] = std::cos(a);
      o[half + i] = std::sin(a);
    }
    if (D % 2) o[D - 1] = 0.f;
  }
}

void CpuBackend::embedding_fwd(const float* table, const int32_t* idx, float* out, int B, int D,
                               int ldo) {
  for (int b = 0; b < B; ++b)
    std::memcpy(out + static_cast<size_t>(b) * ldo, table + static_cast<size_t>(idx[b]) * D,
                sizeof(float) * D);
}

void CpuBackend::embedding_bwd(const float* dout, const int32_t* idx, float* dtable, int B, int D,
                               int ldo) {
  // Serial: repeated indices accumulate into the same row.
  for (int b = 0; b < B; ++b) {
    float* dst = dtable + static_cast<size_t>(idx[b]) * D;
    const float* src = dout + static_cast<size_t>(b) * ldo;
#pragma omp simd
    for (int d = 0; d < D; ++d) dst[d] += src[d];
  }
}

void CpuBackend::unpatchify_fwd(const float* tok, float* img, int B, int E, int C, int S, int p) {
  const int g = S / p, T = E + g * g, F = p * p * C;
#pragma omp parallel for collapse(2) \
    schedule(static) if (static_cast <long>(B) * C * S * S >= 32768)
  for (int b = 0; b < B; ++b)
    for (int c = 0; c < C; ++c)
      for (int y = 0; y < S; ++y) {
        const int i = y / p, u = y % p;
        float* dst = img + ((static_cast<size_t>(b) * C + c) * S + y) * S;
        for (int x = 0; x < S; ++x) {
          const int j = x / p, v = x % p;
          dst[x] = tok[(static_cast<size_t>(b) * T + E + i * g + j) * F + (u * p + v) * C + c];
        }
      }
}

void CpuBackend::unpatchify_bwd(const float* dimg, float* dtok, int B, int E, int C, int S, int p) {
  const int g = S / p, T = E + g * g, F = p * p * C;
#pragma omp parallel for schedule(static) if (static_cast <long>(B) * T * F >= 32768)
  for (int b = 0; b < B; ++b) {
    float* base = dtok + static_cast<size_t>(b) * T * F;
    std::memset(base, 0, sizeof(float) * E * F);
    for (int i = 0; i < g; ++i)
      for (int j = 0; j < g; ++j) {
        float* tr = base + static_cast<size_t>(E + i * g + j) * F;
        for (int u = 0; u < p; ++u)
          for (int v = 0; v < p; ++v)
            for (int c = 0; c < C; ++c)
              tr[(u * p + v) * C + c] =
                  dimg[((static_cast<size_t>(b) * C + c) * S + i * p + u) * S + j * p + v];
      }
  }
}

}  // namespace uvit
