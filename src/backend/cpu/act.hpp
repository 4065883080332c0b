// The CPU backend's activation element types (docs/cpu_bf16.md): every act kernel is one template
// over the element type T, float in the fp32 mode and bf16 in the bf16 mode, that computes in fp32.
// The hot kernels work on blocks: load_f32() gives an fp32 view of a block of act elements (the
// data itself for float, a copy widened by the vector routines below for bf16), the kernel's loop
// runs on fp32 arrays only, and store_f32() narrows the results back. Per-element ld()/st<T>()
// inside a long loop body made GCC process 32 elements per iteration for the 32-lane bf16 stores
// and spill registers, so bf16 ran slower than fp32 (docs/benchmarks.md, "bf16 on the CPU").
#pragma once
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>
#define UVIT_CPU_AVX512 1
#endif

namespace uvit::cpu {

// A bfloat16: the top 16 bits of an IEEE fp32.
struct bf16 {
  uint16_t bits;
};

inline float ld(float v) { return v; }
inline float ld(bf16 v) { return std::bit_cast<float>(uint32_t(v.bits) << 16); }

// fp32 -> bf16, round to nearest even (what PyTorch's and oneDNN's conversions do); a NaN stays a
// (quiet) NaN instead of rounding into an infinity.
inline bf16 to_bf16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
  return bf16{uint16_t(nan ? ((u >> 16) | 0x40u) : r)};
}

template <class T>
inline T st(float v) {
  if constexpr (sizeof(T) == sizeof(float))
    return v;
  else
    return to_bf16(v);
}

// ---- vector conversions of n elements (any n, any alignment) ----

// Portable fp32 -> bf16: to_bf16 in an `omp simd` loop, which compilers turn into vector integer
// round-to-nearest-even (AVX2, AVX-512) or leave scalar.
inline void narrow_portable(bf16* dst, const float* src, long n) {
#pragma omp simd
  for (long i = 0; i < n; ++i) dst[i] = to_bf16(src[i]);
}

// fp32 -> bf16, bit for bit to_bf16. With AVX512-BF16, vcvtne2ps2bf16 rounds 32 lanes at once: it
// rounds to nearest even and quiets a NaN exactly as to_bf16 does ((bits >> 16) | 0x40), but it
// flushes denormal inputs to signed zero. So lanes whose exponent bits are zero (zeros and
// denormals) are checked, and a block holding a denormal is redone by to_bf16, which rounds it to
// a bf16 denormal as PyTorch does.
inline void narrow(bf16* dst, const float* src, long n) {
#if defined(UVIT_CPU_AVX512) && defined(__AVX512BF16__)
  const __m512i exp_bits = _mm512_set1_epi32(0x7f800000), frac_bits = _mm512_set1_epi32(0x007fffff);
  // A denormal among the lanes with zero exponent (k) of u: rare, so tested only when k is set.
  auto has_denormal = [&](__mmask16 k, __m512i u) {
    return k && _mm512_mask_test_epi32_mask(k, u, frac_bits);
  };
  long i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 lo = _mm512_loadu_ps(src + i), hi = _mm512_loadu_ps(src + i + 16);
    _mm512_storeu_si512(dst + i, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    const __m512i ul = _mm512_castps_si512(lo), uh = _mm512_castps_si512(hi);
    const __mmask16 kl = _mm512_testn_epi32_mask(ul, exp_bits);
    const __mmask16 kh = _mm512_testn_epi32_mask(uh, exp_bits);
    if ((kl | kh) && (has_denormal(kl, ul) || has_denormal(kh, uh)))
      narrow_portable(dst + i, src + i, 32);
  }
  for (; i < n; i += 16) {
    const long m = std::min(16L, n - i);
    const __mmask16 k = __mmask16((1u << m) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(k, src + i);
    _mm256_mask_storeu_epi16(dst + i, k, (__m256i)_mm512_cvtneps_pbh(v));
    const __m512i u = _mm512_castps_si512(v);
    if (has_denormal(_mm512_testn_epi32_mask(u, exp_bits), u)) narrow_portable(dst + i, src + i, m);
  }
#else
  narrow_portable(dst, src, n);
#endif
}

// bf16 -> fp32: a 16-bit shift (exact).
inline void widen(float* dst, const bf16* src, long n) {
#if defined(UVIT_CPU_AVX512)
  auto wide = [](__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  };
  long i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(dst + i, wide(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
  if (i < n) {
    const __mmask16 k = __mmask16((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(dst + i, k, wide(_mm256_maskz_loadu_epi16(k, src + i)));
  }
#else
#pragma omp simd
  for (long i = 0; i < n; ++i) dst[i] = ld(src[i]);
#endif
}

// n elements from src to dst, converting between element types (a memcpy when they are equal).
template <class D, class S>
inline void convert(D* dst, const S* src, long n) {
  if constexpr (std::is_same_v<D, S>) {
    if (n > 0 && dst != src) std::memmove(dst, src, sizeof(D) * size_t(n));
  } else if constexpr (std::is_same_v<D, bf16>) {
    narrow(dst, src, n);
  } else {
    widen(dst, src, n);
  }
}

// ---- fp32 blocks of act data ----

constexpr long kBlock = 512;  // elements of a 1-D kernel's block: 2 KiB of fp32, stays in L1

// Per-thread scratch for fp32 copies of act blocks or rows: empty for float, which needs none.
template <class T>
inline std::vector<float> f32_scratch(size_t n) {
  return std::vector<float>(std::is_same_v<T, float> ? 0 : n);
}

// An fp32 view of n act elements at p: p itself for float, their widened copy in buf for bf16.
template <class T>
inline const float* load_f32(const T* p, long n, float* buf) {
  if constexpr (std::is_same_v<T, float>) {
    return p;
  } else {
    widen(buf, p, n);
    return buf;
  }
}

// Where a kernel writes fp32 results bound for p: p itself for float, buf for bf16; store_f32
// then narrows buf into p (nothing to do for float).
template <class T>
inline float* out_f32(T* p, float* buf) {
  if constexpr (std::is_same_v<T, float>)
    return p;
  else
    return buf;
}
template <class T>
inline void store_f32(T* p, const float* v, long n) {
  if constexpr (!std::is_same_v<T, float>) narrow(p, v, n);
}

// Runs f(i0, m) over [0, n) in blocks of kBlock elements (m <= kBlock), in parallel for large n.
template <class F>
inline void for_each_block(long n, long parallel_min, F f) {
  const long nb = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (n >= parallel_min)
  for (long k = 0; k < nb; ++k) f(k * kBlock, std::min(kBlock, n - k * kBlock));
}

// The act pointers of the Backend interface are typed float*; a kernel views them as T.
template <class T>
inline T* as(float* p) {
  return reinterpret_cast<T*>(p);
}
template <class T>
inline const T* as(const float* p) {
  return reinterpret_cast<const T*>(p);
}

// Calls f(T{}) with T the act type: bf16 when `bf16_mode`, else float.
template <class F>
inline decltype(auto) with_act(bool bf16_mode, F&& f) {
  if (bf16_mode) return f(bf16{});
  return f(float{});
}

}  // namespace uvit::cpu

// In a CpuBackend member: runs `call` with T bound to the act type of this backend.
#define UVIT_CPU_ACT(call)                          \
  ::uvit::cpu::with_act(bf16_, [&](auto act_tag_) { \
    using T = decltype(act_tag_);                   \
    call;                                           \
  })
