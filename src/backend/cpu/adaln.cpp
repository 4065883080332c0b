// DiT's adaLN kernels (modulate, gate). The per-sample sums of the backward passes run over tokens
// for a block of features at a time, so each thread owns its output and the reduction order is
// fixed (results do not depend on the thread count).
#include <algorithm>
#include <vector>

#include "backend/cpu/act.hpp"
#include "backend/cpu/cpu_backend.hpp"

namespace uvit {

namespace {
constexpr long kParallelMin = 1 << 14;
constexpr int kChunk = 64;  // features per task of the token reductions

// Calls f(b, d0, d1) for every sample and feature block, in parallel.
template <class F>
void for_blocks(int B, int D, long work, F f) {
  const int nb = (D + kChunk - 1) / kChunk;
  const long tasks = long(B) * nb;
#pragma omp parallel for schedule(static) if (work >= kParallelMin)
  for (long k = 0; k < tasks; ++k) {
    const int b = int(k / nb), d0 = int(k % nb) * kChunk;
    f(b, d0, std::min(D, d0 + kChunk));
  }
}

using cpu::as;

// The forward kernels run 16 lanes at a time, converted in registers (act.hpp).
template <class T>
void modulate_fwd_t(const T* x, const T* shift, const T* scale, int ldm, T* y, int B, int N,
                    int D) {
  const long work = long(B) * N * D;
#pragma omp parallel if (work >= kParallelMin)
  {
    // 1 + scale and shift of the current sample in fp32, made once per sample (a thread's rows
    // are consecutive), so the row loop converts only x and y.
    std::vector<float> s1(size_t(D) + 16), sf(size_t(D) + 16);
    long cached = -1;
#pragma omp for schedule(static)
    for (long r = 0; r < long(B) * N; ++r) {
      const long b = r / N;
      float *c = s1.data(), *h = shift ? sf.data() : nullptr;
      if (b != cached) {
        cached = b;
        const T *sc = scale + b * ldm, *sh = shift ? shift + b * ldm : nullptr;
        cpu::for_each16(D, [=](long d, long m) {
          cpu::store16(c + d, 1.f + cpu::load16(sc + d, m), m);
          if (h) cpu::store16(h + d, cpu::load16(sh + d, m), m);
        });
      }
      const T* xr = x + r * D;
      T* yr = y + r * D;
      // Two loops, not a select: x * c + h must stay one expression to contract into an FMA as
      // the per-element code did (the fp32 results are bit for bit what they were).
      if (h)
        cpu::for_each16(D, [=](long d, long m) {
          cpu::store16(yr + d,
                       cpu::load16(xr + d, m) * cpu::load16(c + d, m) + cpu::load16(h + d, m), m);
        });
      else
        cpu::for_each16(D, [=](long d, long m) {
          cpu::store16(yr + d, cpu::load16(xr + d, m) * cpu::load16(c + d, m), m);
        });
    }
  }
}

// The backward kernels keep a feature block's sums in registers: kChunk / 16 vectors of 16 lanes,
// converted in registers. Per-element ld()/st<T>() ran the bf16 mode slower than fp32 on AMX
// (docs/benchmarks.md, "modulate_bwd"). Each lane sums over tokens in order, contracting
// s + g * x into an FMA as the per-element code did, so the results are bit for bit as before.
constexpr int kVecs = kChunk / 16;
using cpu::f32x16;

// f(j, d, m) for the vectors j of the feature block [d0, d1): features d.. d + m (m <= 16 lanes).
template <class F>
inline void for_vecs(int d0, int d1, F f) {
#pragma GCC unroll 4
  for (int j = 0; j < kVecs; ++j) {
    const int d = d0 + 16 * j;
    if (d < d1) f(j, d, std::min(16, d1 - d));
  }
}

template <class T>
void modulate_bwd_t(const T* dy, const T* x, const T* scale, int ldm, T* dx, T* dshift, T* dscale,
                    int B, int N, int D) {
  for_blocks(B, D, long(B) * N * D, [&](int b, int d0, int d1) {
    f32x16 s_sh[kVecs] = {}, s_sc[kVecs] = {}, c[kVecs] = {};
    const T* sc = scale + long(b) * ldm;
    for_vecs(d0, d1, [&](int j, int d, int m) { c[j] = 1.f + cpu::load16(sc + d, m); });
    for (int n = 0; n < N; ++n) {
      const long r = (long(b) * N + n) * D;
      for_vecs(d0, d1, [&](int j, int d, int m) {
        const f32x16 g = cpu::load16(dy + r + d, m);
        s_sh[j] = s_sh[j] + g;
        s_sc[j] = s_sc[j] + g * cpu::load16(x + r + d, m);
        cpu::store16(dx + r + d, g * c[j], m);
      });
    }
    for_vecs(d0, d1, [&](int j, int d, int m) {
      if (dshift) cpu::store16(dshift + long(b) * ldm + d, s_sh[j], m);
      cpu::store16(dscale + long(b) * ldm + d, s_sc[j], m);
    });
  });
}

template <class T>
void gate_fwd_t(const T* x, const T* y, const T* gate, int ldm, T* out, int B, int N, int D) {
  const long work = long(B) * N * D;
#pragma omp parallel for schedule(static) if (work >= kParallelMin)
  for (long r = 0; r < long(B) * N; ++r) {
    const T *g = gate + (r / N) * ldm, *xr = x + r * D, *yr = y + r * D;
    T* o = out + r * D;
    cpu::for_each16(D, [=](long d, long m) {
      cpu::store16(o + d, cpu::load16(xr + d, m) + cpu::load16(g + d, m) * cpu::load16(yr + d, m),
                   m);
    });
  }
}

template <class T>
void gate_bwd_t(const T* dout, const T* y, const T* gate, int ldm, T* dy, T* dgate, int B, int N,
                int D) {
  for_blocks(B, D, long(B) * N * D, [&](int b, int d0, int d1) {
    f32x16 s[kVecs] = {}, g[kVecs] = {};
    const T* gt = gate + long(b) * ldm;
    for_vecs(d0, d1, [&](int j, int d, int m) { g[j] = cpu::load16(gt + d, m); });
    for (int n = 0; n < N; ++n) {
      const long r = (long(b) * N + n) * D;
      for_vecs(d0, d1, [&](int j, int d, int m) {
        const f32x16 go = cpu::load16(dout + r + d, m);
        s[j] = s[j] + go * cpu::load16(y + r + d, m);
        cpu::store16(dy + r + d, go * g[j], m);
      });
    }
    for_vecs(d0, d1,
             [&](int j, int d, int m) { cpu::store16(dgate + long(b) * ldm + d, s[j], m); });
  });
}
}  // namespace

void CpuBackend::modulate_fwd(const float* x, const float* shift, const float* scale, int ldm,
                              float* y, int B, int N, int D) {
  UVIT_CPU_ACT(modulate_fwd_t(as<T>(x), as<T>(shift), as<T>(scale), ldm, as<T>(y), B, N, D));
}

void CpuBackend::modulate_bwd(const float* dy, const float* x, const float* scale, int ldm,
                              float* dx, float* dshift, float* dscale, int B, int N, int D) {
  UVIT_CPU_ACT(modulate_bwd_t(as<T>(dy), as<T>(x), as<T>(scale), ldm, as<T>(dx), as<T>(dshift),
                              as<T>(dscale), B, N, D));
}

void CpuBackend::gate_fwd(const float* x, const float* y, const float* gate, int ldm, float* out,
                          int B, int N, int D) {
  UVIT_CPU_ACT(gate_fwd_t(as<T>(x), as<T>(y), as<T>(gate), ldm, as<T>(out), B, N, D));
}

void CpuBackend::gate_bwd(const float* dout, const float* y, const float* gate, int ldm, float* dy,
                          float* dgate, int B, int N, int D) {
  UVIT_CPU_ACT(
      gate_bwd_t(as<T>(dout), as<T>(y), as<T>(gate), ldm, as<T>(dy), as<T>(dgate), B, N, D));
}

}  // namespace uvit
