// Token plumbing: patch im2col/col2im (the patch conv as a GEMM), sequence assembly with position
// embeddings, timestep and label embeddings, unpatchify. All memory-bound index shuffles.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/act.hpp"
#include "backend/cpu/cpu_backend.hpp"

namespace uvit {

namespace {
using cpu::as;
using cpu::convert;
using cpu::ld;
using cpu::st;

template <class T>
void patch_im2col_t(const float* x, T* cols, int B, int C, int H, int W, int p) {
  const int gh = H / p, gw = W / p, L = gh * gw, P = C * p * p;
#pragma omp parallel for collapse(2) schedule(static) if (static_cast <long>(B) * L * P >= 32768)
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < gh; ++i)
      for (int j = 0; j < gw; ++j) {
        T* row = cols + (static_cast<size_t>(b) * L + i * gw + j) * P;
        for (int c = 0; c < C; ++c)
          for (int u = 0; u < p; ++u) {
            const float* src = x + ((static_cast<size_t>(b) * C + c) * H + i * p + u) * W + j * p;
            convert(row + (c * p + u) * p, src, p);
          }
      }
}

template <class T>
void patch_col2im_t(const T* cols, float* x, int B, int C, int H, int W, int p) {
  // Patches tile the image exactly (stride == kernel), so this is a pure permutation back.
  const int gh = H / p, gw = W / p, L = gh * gw, P = C * p * p;
#pragma omp parallel for collapse(2) schedule(static) if (static_cast <long>(B) * L * P >= 32768)
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < gh; ++i)
      for (int j = 0; j < gw; ++j) {
        const T* row = cols + (static_cast<size_t>(b) * L + i * gw + j) * P;
        for (int c = 0; c < C; ++c)
          for (int u = 0; u < p; ++u) {
            float* dst = x + ((static_cast<size_t>(b) * C + c) * H + i * p + u) * W + j * p;
            convert(dst, row + (c * p + u) * p, p);
          }
      }
}

template <class T>
void tokens_fwd_t(const T* extras, const T* patches, const float* pos, T* seq, int B, int E, int L,
                  int D) {
  const int Tn = E + L;
#pragma omp parallel for collapse(2) schedule(static) if (static_cast <long>(B) * Tn * D >= 32768)
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < Tn; ++t) {
      const T* src = t < E ? extras + (static_cast<size_t>(b) * E + t) * D
                           : patches + (static_cast<size_t>(b) * L + (t - E)) * D;
      const float* pr = pos + static_cast<size_t>(t) * D;
      T* dst = seq + (static_cast<size_t>(b) * Tn + t) * D;
#pragma omp simd
      for (int d = 0; d < D; ++d) dst[d] = st<T>(ld(src[d]) + pr[d]);
    }
}

template <class T>
void tokens_bwd_t(const T* dseq, T* dextras, T* dpatches, float* dpos, int B, int E, int L, int D) {
  const int Tn = E + L;
  // Each thread owns whole token positions t, so dpos[t] (summed over b) has a single writer.
#pragma omp parallel for schedule(static) if (static_cast <long>(B) * Tn * D >= 32768)
  for (int t = 0; t < Tn; ++t) {
    float* dp = dpos + static_cast<size_t>(t) * D;
    for (int b = 0; b < B; ++b) {
      const T* src = dseq + (static_cast<size_t>(b) * Tn + t) * D;
      T* dst = t < E ? (dextras ? dextras + (static_cast<size_t>(b) * E + t) * D : nullptr)
                     : dpatches + (static_cast<size_t>(b) * L + (t - E)) * D;
      if (dst) std::memcpy(dst, src, sizeof(T) * D);
#pragma omp simd
      for (int d = 0; d < D; ++d) dp[d] += ld(src[d]);
    }
  }
}

template <class T>
void timestep_embedding_t(const float* t, T* out, int B, int D, int ldo) {
  // Mirrors the PyTorch fp32 sequence: exp(float(-ln 10000) * float(i) / half), args = t * f.
  const int half = D / 2;
  const float c = static_cast<float>(-std::log(10000.0));
  for (int b = 0; b < B; ++b) {
    T* o = out + static_cast<size_t>(b) * ldo;
    for (int i = 0; i < half; ++i) {
      const float f = std::exp(c * static_cast<float>(i) / static_cast<float>(half));
      const float a = t[b] * f;
      o[i] = st<T>(std::cos(a));
      o[half + i] = st<T>(std::sin(a));
    }
    if (D % 2) o[D - 1] = st<T>(0.f);
  }
}

template <class T>
void embedding_fwd_t(const float* table, const int32_t* idx, T* out, int B, int D, int ldo) {
  for (int b = 0; b < B; ++b)
    convert(out + static_cast<size_t>(b) * ldo, table + static_cast<size_t>(idx[b]) * D, D);
}

template <class T>
void embedding_bwd_t(const T* dout, const int32_t* idx, float* dtable, int B, int D, int ldo) {
  // Serial: repeated indices accumulate into the same row.
  for (int b = 0; b < B; ++b) {
    float* dst = dtable + static_cast<size_t>(idx[b]) * D;
    const T* src = dout + static_cast<size_t>(b) * ldo;
#pragma omp simd
    for (int d = 0; d < D; ++d) dst[d] += ld(src[d]);
  }
}

template <class T>
void unpatchify_fwd_t(const T* tok, float* img, int B, int E, int C, int S, int p) {
  const int g = S / p, Tn = E + g * g, F = p * p * C;
#pragma omp parallel for collapse(2) \
    schedule(static) if (static_cast <long>(B) * C * S * S >= 32768)
  for (int b = 0; b < B; ++b)
    for (int c = 0; c < C; ++c)
      for (int y = 0; y < S; ++y) {
        const int i = y / p, u = y % p;
        float* dst = img + ((static_cast<size_t>(b) * C + c) * S + y) * S;
        for (int x = 0; x < S; ++x) {
          const int j = x / p, v = x % p;
          dst[x] = ld(tok[(static_cast<size_t>(b) * Tn + E + i * g + j) * F + (u * p + v) * C + c]);
        }
      }
}

template <class T>
void unpatchify_bwd_t(const float* dimg, T* dtok, int B, int E, int C, int S, int p) {
  const int g = S / p, Tn = E + g * g, F = p * p * C;
#pragma omp parallel for schedule(static) if (static_cast <long>(B) * Tn * F >= 32768)
  for (int b = 0; b < B; ++b) {
    T* base = dtok + static_cast<size_t>(b) * Tn * F;
    std::memset(base, 0, sizeof(T) * E * F);  // +0.0 is all-zero bits in fp32 and bf16
    for (int i = 0; i < g; ++i)
      for (int j = 0; j < g; ++j) {
        T* tr = base + static_cast<size_t>(E + i * g + j) * F;
        for (int u = 0; u < p; ++u)
          for (int v = 0; v < p; ++v)
            for (int c = 0; c < C; ++c)
              tr[(u * p + v) * C + c] =
                  st<T>(dimg[((static_cast<size_t>(b) * C + c) * S + i * p + u) * S + j * p + v]);
      }
  }
}

}  // namespace

void CpuBackend::patch_im2col(const float* x, float* cols, int B, int C, int S, int p, int W) {
  UVIT_CPU_ACT(patch_im2col_t(x, as<T>(cols), B, C, S, W > 0 ? W : S, p));
}
void CpuBackend::patch_col2im(const float* cols, float* x, int B, int C, int S, int p, int W) {
  UVIT_CPU_ACT(patch_col2im_t(as<T>(cols), x, B, C, S, W > 0 ? W : S, p));
}
void CpuBackend::tokens_fwd(const float* extras, const float* patches, const float* pos, float* seq,
                            int B, int E, int L, int D) {
  UVIT_CPU_ACT(tokens_fwd_t(as<T>(extras), as<T>(patches), pos, as<T>(seq), B, E, L, D));
}
void CpuBackend::tokens_bwd(const float* dseq, float* dextras, float* dpatches, float* dpos, int B,
                            int E, int L, int D) {
  UVIT_CPU_ACT(tokens_bwd_t(as<T>(dseq), as<T>(dextras), as<T>(dpatches), dpos, B, E, L, D));
}
void CpuBackend::timestep_embedding(const float* t, float* out, int B, int D, int ldo) {
  UVIT_CPU_ACT(timestep_embedding_t(t, as<T>(out), B, D, ldo));
}
void CpuBackend::fit_time_shift(const float* t, float* out, int n, float s) {
  for (int i = 0; i < n; ++i) out[i] = std::min(s * t[i] / (1.f + (s - 1.f) * t[i]), 1.f);
}
void CpuBackend::embedding_fwd(const float* table, const int32_t* idx, float* out, int B, int D,
                               int ldo) {
  UVIT_CPU_ACT(embedding_fwd_t(table, idx, as<T>(out), B, D, ldo));
}
void CpuBackend::embedding_bwd(const float* dout, const int32_t* idx, float* dtable, int B, int D,
                               int ldo) {
  UVIT_CPU_ACT(embedding_bwd_t(as<T>(dout), idx, dtable, B, D, ldo));
}
void CpuBackend::unpatchify_fwd(const float* tok, float* img, int B, int E, int C, int S, int p) {
  UVIT_CPU_ACT(unpatchify_fwd_t(as<T>(tok), img, B, E, C, S, p));
}
void CpuBackend::unpatchify_bwd(const float* dimg, float* dtok, int B, int E, int C, int S, int p) {
  UVIT_CPU_ACT(unpatchify_bwd_t(dimg, as<T>(dtok), B, E, C, S, p));
}

}  // namespace uvit
