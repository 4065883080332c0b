// CRC-32 by folding (docs/formats.md, "Writing .pth", CRC-32): the data is cut into 128-bit blocks,
// each multiplied (carry-less) by x^D mod P to move it D bits further down the message, and added
// to the block there; the last block left is reduced by zlib's table code, which also takes the
// bytes after the last whole block. Bit order: a block loaded little-endian holds the coefficient
// of x^(127-i) in bit i (zip's CRC is reflected).
#include "io/crc32.hpp"

#include <zlib.h>

#include "uvit/error.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define UVIT_CRC32_X86 1
#endif

namespace uvit::zip {

namespace {

uint32_t crc32_zlib(uint32_t crc, const uint8_t* p, size_t n) {
  if (n == 0) return crc;  // crc32_z(crc, nullptr, 0) would reset to 0
  return uint32_t(crc32_z(crc, p, n));
}

#ifdef UVIT_CRC32_X86

// x^n mod P, P = x^32 + 0x04C11DB7's terms (the polynomial unreflected); bit i holds x^i.
constexpr uint32_t xpow_mod(unsigned n) {
  uint64_t r = 1;
  for (unsigned i = 0; i < n; ++i) {
    r <<= 1;
    if (r >> 32) r ^= 0x104C11DB7u;
  }
  return uint32_t(r);
}

// The 64-bit operand for carry-less multiplication by x^n mod P. Multiplying two reflected 64-bit
// operands gives the reflected 128-bit product times x, so this holds x^(n-1) mod P: bit 63-i for
// x^i.
constexpr uint64_t fold_const(unsigned n) {
  const uint32_t f = xpow_mod(n - 1);
  uint64_t r = 0;
  for (int i = 0; i < 32; ++i)
    if ((f >> i) & 1) r |= uint64_t(1) << (63 - i);
  return r;
}

// Constants to move a block D bits on: its low qword (x^127..x^64 of the block) by D + 64, its
// high qword by D.
struct Fold {
  uint64_t lo, hi;
};
constexpr Fold fold_by(unsigned d) { return {fold_const(d + 64), fold_const(d)}; }

constexpr Fold k128 = fold_by(128), k256 = fold_by(256), k384 = fold_by(384), k512 = fold_by(512),
               k2048 = fold_by(2048);

__attribute__((target("pclmul,sse4.1"))) inline __m128i fold128(__m128i x, __m128i k,
                                                                __m128i next) {
  const __m128i lo = _mm_clmulepi64_si128(x, k, 0x00), hi = _mm_clmulepi64_si128(x, k, 0x11);
  return _mm_xor_si128(_mm_xor_si128(lo, hi), next);
}

__attribute__((target("pclmul,sse4.1"))) inline __m128i load128(const uint8_t* p) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}

// x is the folded message so far; p[0..n) follows it.
__attribute__((target("pclmul,sse4.1"))) uint32_t finish128(__m128i x, const uint8_t* p, size_t n) {
  const __m128i k = _mm_set_epi64x(int64_t(k128.hi), int64_t(k128.lo));
  for (; n >= 16; p += 16, n -= 16) x = fold128(x, k, load128(p));
  // x is now the message whose CRC from a zero register is ours: zlib's crc32 starting from
  // 0xFFFFFFFF (it inverts the register on the way in and out) gives it.
  alignas(16) uint8_t b[16];
  _mm_store_si128(reinterpret_cast<__m128i*>(b), x);
  return crc32_zlib(crc32_zlib(0xFFFFFFFFu, b, 16), p, n);
}

// Four 128-bit lanes, 64 bytes a step. Needs n >= 64.
__attribute__((target("pclmul,sse4.1"))) uint32_t crc32_pclmul(uint32_t crc, const uint8_t* p,
                                                               size_t n) {
  // The register (~crc, as zlib stores it inverted) adds into the message's first 32 bits.
  __m128i x0 = _mm_xor_si128(load128(p), _mm_cvtsi32_si128(int(~crc))), x1 = load128(p + 16),
          x2 = load128(p + 32), x3 = load128(p + 48);
  p += 64;
  n -= 64;
  const __m128i k4 = _mm_set_epi64x(int64_t(k512.hi), int64_t(k512.lo));
  for (; n >= 64; p += 64, n -= 64) {
    x0 = fold128(x0, k4, load128(p));
    x1 = fold128(x1, k4, load128(p + 16));
    x2 = fold128(x2, k4, load128(p + 32));
    x3 = fold128(x3, k4, load128(p + 48));
  }
  const __m128i k1 = _mm_set_epi64x(int64_t(k128.hi), int64_t(k128.lo));
  x1 = fold128(x0, k1, x1);
  x2 = fold128(x1, k1, x2);
  x3 = fold128(x2, k1, x3);
  return finish128(x3, p, n);
}

#define UVIT_VPCLMUL_TARGET "avx512f,avx512vl,vpclmulqdq,pclmul,sse4.1"

__attribute__((target(UVIT_VPCLMUL_TARGET))) inline __m512i fold512(__m512i x, __m512i k,
                                                                    __m512i next) {
  const __m512i lo = _mm512_clmulepi64_epi128(x, k, 0x00),
                hi = _mm512_clmulepi64_epi128(x, k, 0x11);
  return _mm512_ternarylogic_epi64(lo, hi, next, 0x96);  // lo ^ hi ^ next
}

__attribute__((target(UVIT_VPCLMUL_TARGET))) inline __m512i load512(const uint8_t* p) {
  return _mm512_loadu_si512(p);
}

// (_mm512_set_epi64 rather than a broadcast or an extract: GCC 12 warns on their undefined
// operand.)
__attribute__((target(UVIT_VPCLMUL_TARGET))) inline __m512i bcast(Fold f) {
  const auto lo = int64_t(f.lo), hi = int64_t(f.hi);
  return _mm512_set_epi64(hi, lo, hi, lo, hi, lo, hi, lo);
}

// Four 512-bit registers of four lanes each, 256 bytes a step. Needs n >= 256.
__attribute__((target(UVIT_VPCLMUL_TARGET))) uint32_t crc32_vpclmul(uint32_t crc, const uint8_t* p,
                                                                    size_t n) {
  const __m512i init = _mm512_zextsi128_si512(_mm_cvtsi32_si128(int(~crc)));
  __m512i y0 = _mm512_xor_si512(load512(p), init), y1 = load512(p + 64), y2 = load512(p + 128),
          y3 = load512(p + 192);
  p += 256;
  n -= 256;
  const __m512i k4 = bcast(k2048);
  for (; n >= 256; p += 256, n -= 256) {
    y0 = fold512(y0, k4, load512(p));
    y1 = fold512(y1, k4, load512(p + 64));
    y2 = fold512(y2, k4, load512(p + 128));
    y3 = fold512(y3, k4, load512(p + 192));
  }
  const __m512i k1 = bcast(k512);
  y1 = fold512(y0, k1, y1);
  y2 = fold512(y1, k1, y2);
  y3 = fold512(y2, k1, y3);
  for (; n >= 64; p += 64, n -= 64) y3 = fold512(y3, k1, load512(p));
  // The four lanes onto the last: lane j moves 128 * (3 - j) bits; lane 3's constants are 0.
  const __m512i kl = _mm512_set_epi64(0, 0, int64_t(k128.hi), int64_t(k128.lo), int64_t(k256.hi),
                                      int64_t(k256.lo), int64_t(k384.hi), int64_t(k384.lo));
  const __m512i t = fold512(y3, kl, _mm512_setzero_si512());
  alignas(64) __m128i moved[4], last[4];
  _mm512_store_si512(moved, t);
  _mm512_store_si512(last, y3);
  const __m128i x =
      _mm_xor_si128(_mm_xor_si128(moved[0], moved[1]), _mm_xor_si128(moved[2], last[3]));
  return finish128(x, p, n);
}

#endif  // UVIT_CRC32_X86

Crc32Impl detect() {
#ifdef UVIT_CRC32_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("vpclmulqdq") && __builtin_cpu_supports("avx512f") &&
      __builtin_cpu_supports("avx512vl"))
    return Crc32Impl::kVpclmul;
  if (__builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1"))
    return Crc32Impl::kPclmul;
#endif
  return Crc32Impl::kZlib;
}

Crc32Impl best() {
  static const Crc32Impl b = detect();
  return b;
}

}  // namespace

bool crc32_supported(Crc32Impl impl) {
  switch (impl) {
    case Crc32Impl::kAuto:
    case Crc32Impl::kZlib:
      return true;
    case Crc32Impl::kPclmul:
      return best() != Crc32Impl::kZlib;
    case Crc32Impl::kVpclmul:
      return best() == Crc32Impl::kVpclmul;
  }
  return false;
}

const char* crc32_impl_name() {
  switch (best()) {
    case Crc32Impl::kVpclmul:
      return "vpclmulqdq";
    case Crc32Impl::kPclmul:
      return "pclmulqdq";
    default:
      return "zlib";
  }
}

uint32_t crc32(uint32_t crc, const void* data, size_t n, Crc32Impl impl) {
  const auto* p = static_cast<const uint8_t*>(data);
  if (impl == Crc32Impl::kAuto) impl = best();
  UVIT_CHECK(crc32_supported(impl),
             "crc32: this CPU lacks the instructions for the requested code");
#ifdef UVIT_CRC32_X86
  if (impl == Crc32Impl::kVpclmul && n >= 256) return crc32_vpclmul(crc, p, n);
  if (impl != Crc32Impl::kZlib && n >= 64) return crc32_pclmul(crc, p, n);
#endif
  return crc32_zlib(crc, p, n);
}

}  // namespace uvit::zip
