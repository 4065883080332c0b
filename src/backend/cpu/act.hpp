// The CPU backend's activation element types (docs/cpu_bf16.md): every act kernel is one template
// over the element type T, float in the fp32 mode and bf16 in the bf16 mode, that computes in fp32.
// Light kernels convert 16 lanes in registers (load16/store16); heavier ones convert a block or row
// once into an fp32 array (load_f32/store_f32: the data itself for float) and loop over fp32 only.
// Both use the vector conversions below; scalar ld()/st<T>() in a long loop body made GCC handle
// 32 elements per iteration (for the 32-lane bf16 stores) and spill registers, so bf16 ran slower
// than fp32 (docs/benchmarks.md, "bf16 on the CPU").
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

// rows x cols elements of `size` bytes, rows ld elements apart in src, into dst rows ld_dst apart
// (serial: callers run it inside their own threads). Dense copies of strided GEMM operands.
inline void copy_rows(void* dst, long ld_dst, const void* src, long ld_src, long rows, long cols,
                      size_t size) {
  for (long r = 0; r < rows; ++r)
    std::memcpy(static_cast<char*>(dst) + size * size_t(r * ld_dst),
                static_cast<const char*>(src) + size * size_t(r * ld_src), size * size_t(cols));
}

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

// ---- 16 fp32 lanes: vector loads and stores of act elements ----

// 16 fp32 lanes: the unit of the light element-wise kernels, which convert in registers on the way
// in and out. A GCC/Clang vector with AVX-512; elsewhere 16 floats with the same operators, which
// compilers vectorise (a 64-byte vector there would change the calling convention, -Wpsabi).
#if defined(UVIT_CPU_AVX512)
using f32x16 = float __attribute__((vector_size(64)));
#else
struct f32x16 {
  float v[16];
  float& operator[](long j) { return v[j]; }
  float operator[](long j) const { return v[j]; }
};
template <class F>
inline f32x16 lanewise(F f) {
  f32x16 r;
  for (int j = 0; j < 16; ++j) r.v[j] = f(j);
  return r;
}
inline f32x16 operator+(f32x16 a, f32x16 b) {
  return lanewise([&](int j) { return a[j] + b[j]; });
}
inline f32x16 operator*(f32x16 a, f32x16 b) {
  return lanewise([&](int j) { return a[j] * b[j]; });
}
inline f32x16 operator+(float a, f32x16 b) {
  return lanewise([&](int j) { return a + b[j]; });
}
inline f32x16 operator*(float a, f32x16 b) {
  return lanewise([&](int j) { return a * b[j]; });
}
#endif

#if defined(UVIT_CPU_AVX512)
inline __mmask16 lanes(long m) { return m >= 16 ? __mmask16(0xffff) : __mmask16((1u << m) - 1); }
#endif

// m <= 16 act elements at p as fp32 lanes (lanes past m are 0). bf16 widens by a 16-bit shift.
inline f32x16 load16(const float* p, long m) {
#if defined(UVIT_CPU_AVX512)
  if (m >= 16) return f32x16(_mm512_loadu_ps(p));  // unmasked where it can: faster on Zen
  return f32x16(_mm512_maskz_loadu_ps(lanes(m), p));
#else
  f32x16 v{};
  for (long j = 0; j < m; ++j) v[j] = p[j];
  return v;
#endif
}
inline f32x16 load16(const bf16* p, long m) {
#if defined(UVIT_CPU_AVX512)
  const __mmask16 k = lanes(m), all = 0xffff;  // maskz forms: GCC 12 warns on the plain ones
  const __m256i h = m >= 16 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))
                            : _mm256_maskz_loadu_epi16(k, p);
  const __m512i w = _mm512_maskz_cvtepu16_epi32(all, h);
  return f32x16(_mm512_castsi512_ps(_mm512_maskz_slli_epi32(all, w, 16)));
#else
  f32x16 v{};
  for (long j = 0; j < m; ++j) v[j] = ld(p[j]);
  return v;
#endif
}

// Stores the first m <= 16 lanes of v at p. bf16 rounds as to_bf16, bit for bit: AVX512-BF16's
// vcvtneps2bf16 rounds to nearest even and quiets a NaN exactly as to_bf16 does ((bits >> 16) |
// 0x40), but it flushes denormal inputs to signed zero; so where a lane has zero exponent bits and
// a nonzero fraction (rare: the test costs two mask instructions) the lanes are redone by to_bf16,
// which rounds a denormal to a bf16 denormal as PyTorch does.
inline void store16(float* p, f32x16 v, long m) {
#if defined(UVIT_CPU_AVX512)
  if (m >= 16)
    _mm512_storeu_ps(p, __m512(v));
  else
    _mm512_mask_storeu_ps(p, lanes(m), __m512(v));
#else
  for (long j = 0; j < m; ++j) p[j] = v[j];
#endif
}
inline void store16(bf16* p, f32x16 v, long m) {
#if defined(UVIT_CPU_AVX512) && defined(__AVX512BF16__)
  const __mmask16 k = lanes(m);
  const __m256i h = (__m256i)_mm512_cvtneps_pbh(__m512(v));
  if (m >= 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), h);
  else
    _mm256_mask_storeu_epi16(p, k, h);
  const __m512i u = _mm512_castps_si512(__m512(v));
  const __mmask16 zero_exp = _mm512_mask_testn_epi32_mask(k, u, _mm512_set1_epi32(0x7f800000));
  if (zero_exp && _mm512_mask_test_epi32_mask(zero_exp, u, _mm512_set1_epi32(0x007fffff)))
    for (long j = 0; j < m; ++j) p[j] = to_bf16(v[j]);
#else
  // Compilers vectorise this fixed-length loop into integer RNE where the target has vectors.
  for (long j = 0; j < m; ++j) p[j] = to_bf16(v[j]);
#endif
}

// Calls f(i, m) for i = 0, 16, 32, ... < n with m = min(16, n - i) lanes. Kernels pass lambdas
// that capture by value: the vector stores may alias anything (__m512 is may_alias), so captured
// references would be reloaded from memory on every iteration.
template <class F>
inline void for_each16(long n, F f) {
  for (long i = 0; i < n; i += 16) f(i, std::min(16L, n - i));
}

// fp32 -> bf16 of n elements, bit for bit to_bf16; 32 lanes per vcvtne2ps2bf16 where available.
inline void narrow(bf16* dst, const float* src, long n) {
  long i = 0;
#if defined(UVIT_CPU_AVX512) && defined(__AVX512BF16__)
  const __m512i exp_bits = _mm512_set1_epi32(0x7f800000), frac_bits = _mm512_set1_epi32(0x007fffff);
  for (; i + 32 <= n; i += 32) {
    const __m512 lo = _mm512_loadu_ps(src + i), hi = _mm512_loadu_ps(src + i + 16);
    _mm512_storeu_si512(dst + i, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    const __m512i ul = _mm512_castps_si512(lo), uh = _mm512_castps_si512(hi);
    const __mmask16 zl = _mm512_testn_epi32_mask(ul, exp_bits);
    const __mmask16 zh = _mm512_testn_epi32_mask(uh, exp_bits);
    if ((zl | zh) && (_mm512_mask_test_epi32_mask(zl, ul, frac_bits) |
                      _mm512_mask_test_epi32_mask(zh, uh, frac_bits)))
      for (long j = i; j < i + 32; ++j) dst[j] = to_bf16(src[j]);
  }
#endif
  for_each16(n - i, [=](long j, long m) { store16(dst + i + j, load16(src + i + j, m), m); });
}

// bf16 -> fp32 of n elements (exact).
inline void widen(float* dst, const bf16* src, long n) {
  for_each16(n, [=](long i, long m) { store16(dst + i, load16(src + i, m), m); });
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

// Fixed blocks of [0, n) for a sum that gives the same bits at any thread count: ceil(n / per)
// blocks, at least 1 and at most `most` (which bounds the partials' memory), block b holding
// [n b / count, n (b + 1) / count). They depend on n alone, not on the threads that run them: each
// block's partial is summed in order, and the partials in block order (docs/cli.md,
// "Reproducibility").
struct FixedBlocks {
  long n, count;
  FixedBlocks(long n_, long per, long most)
      : n(n_), count(std::clamp((n_ + per - 1) / per, 1L, most)) {}
  long begin(long b) const { return n * b / count; }
  long end(long b) const { return n * (b + 1) / count; }
};

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
