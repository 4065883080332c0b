// The CPU backend's activation element types (docs/cpu_bf16.md): every act kernel is one template
// over the element type T, float in the fp32 mode and bf16 in the bf16 mode, that loads with
// ld() into fp32, computes in fp32 and stores with st<T>(). The conversions are plain integer
// arithmetic, so the kernels' `omp simd` loops still vectorise.
#pragma once
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

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

// n elements from src to dst, converting between element types (a memcpy when they are equal).
template <class D, class S>
inline void convert(D* dst, const S* src, long n) {
  if constexpr (std::is_same_v<D, S>) {
    if (n > 0 && dst != src) std::memmove(dst, src, sizeof(D) * size_t(n));
  } else {
#pragma omp simd
    for (long i = 0; i < n; ++i) dst[i] = st<D>(ld(src[i]));
  }
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
