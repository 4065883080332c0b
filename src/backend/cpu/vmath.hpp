// Branch-free fp32 exp and erf that GCC vectorises inside `#pragma omp simd` loops (std::erf and
// std::exp are scalar library calls and dominate GELU/softmax time otherwise).
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>

namespace uvit::vm {

// exp(x): 2^n * e^r with |r| <= ln2/2 and a degree-7 Taylor polynomial (relative error ~1e-7).
// Returns 0 below -87.3 (the fp32 normal range) and +inf above 88.7.
inline float exp(float x) {
  const float xc = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
  // Round to nearest by the 1.5*2^23 trick (vectorises everywhere, unlike nearbyint).
  const float n = (xc * 1.44269504f + 12582912.f) - 12582912.f;
  float r = std::fma(-n, 0.693145752f, xc);  // ln2 split in two for an exact reduction
  r = std::fma(-n, 1.42860677e-06f, r);
  float p = 1.f / 5040.f;
  p = std::fma(p, r, 1.f / 720.f);
  p = std::fma(p, r, 1.f / 120.f);
  p = std::fma(p, r, 1.f / 24.f);
  p = std::fma(p, r, 1.f / 6.f);
  p = std::fma(p, r, 0.5f);
  p = std::fma(p, r, 1.f);
  p = std::fma(p, r, 1.f);
  // NaN input: convert 0 instead of n (a NaN float-to-int conversion is undefined; UBSan); p is
  // NaN then, so the result still is.
  const float ni = n == n ? n : 0.f;
  const float s =
      std::bit_cast<float>(static_cast<int32_t>((static_cast<int32_t>(ni) + 127) << 23));
  float y = p * s;
  y = x < -87.3f ? 0.f : y;
  return x > 88.7f ? INFINITY : y;
}

// erf(x), absolute error ~2e-7: |x| < 1: x * P(x^2); 1 <= |x| < 3.93: polynomial in |x| - 2.465
// (least-squares Chebyshev fits to erf); beyond: +-1 (erf rounds to 1 in fp32 there).
inline float erf(float x) {
  const float a = std::fabs(x);
  const float z = a * a;
  float s = 8.00695027e-05f;
  s = std::fma(s, z, -0.000805377103f);
  s = std::fma(s, z, 0.00519295979f);
  s = std::fma(s, z, -0.0268560704f);
  s = std::fma(s, z, 0.112836347f);
  s = std::fma(s, z, -0.376126298f);
  s = std::fma(s, z, 1.12837917f);
  s *= a;
  const float t = a - 2.465f;
  float m = 1.06996747e-06f;
  m = std::fma(m, t, 2.50996308e-07f);
  m = std::fma(m, t, -1.71542062e-05f);
  m = std::fma(m, t, 2.31412272e-05f);
  m = std::fma(m, t, 7.6701344e-05f);
  m = std::fma(m, t, -0.000294465418f);
  m = std::fma(m, t, 0.000343108007f);
  m = std::fma(m, t, 0.000471702185f);
  m = std::fma(m, t, -0.00292125958f);
  m = std::fma(m, t, 0.00671260017f);
  m = std::fma(m, t, -0.00974516361f);
  m = std::fma(m, t, 0.00963563807f);
  m = std::fma(m, t, -0.00638852779f);
  m = std::fma(m, t, 0.00259164017f);
  m = std::fma(m, t, 0.999509766f);
  float r = a < 1.f ? s : (a < 3.93f ? m : 1.f);
  r = r > 1.f ? 1.f : r;
  return x < 0.f ? -r : r;
}

}  // namespace uvit::vm
