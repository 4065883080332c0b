// Counter-based randomness (Philox4x32-10): every draw is a pure function of (seed, stream, index),
// so results do not depend on thread scheduling and a resumed run continues the same streams.
#pragma once
#include <array>
#include <cmath>
#include <cstdint>

namespace uvit {

inline std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> ctr,
                                          std::array<uint32_t, 2> key) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    uint64_t p0 = uint64_t(M0) * ctr[0], p1 = uint64_t(M1) * ctr[2];
    ctr = {uint32_t(p1 >> 32) ^ ctr[1] ^ key[0], uint32_t(p1), uint32_t(p0 >> 32) ^ ctr[3] ^ key[1],
           uint32_t(p0)};
    key[0] += W0;
    key[1] += W1;
  }
  return ctr;
}

// A stream of random numbers: block i of stream s under seed k is philox(ctr = {i, i>>32, s,
// s>>32}).
class Philox {
 public:
  Philox(uint64_t seed = 0, uint64_t stream = 0) : seed_(seed), stream_(stream) {}
  // Four uniform 32-bit words for block `index`.
  std::array<uint32_t, 4> block(uint64_t index) const {
    return philox4x32(
        {uint32_t(index), uint32_t(index >> 32), uint32_t(stream_), uint32_t(stream_ >> 32)},
        {uint32_t(seed_), uint32_t(seed_ >> 32)});
  }
  // Uniform in [0, 1) with 24 random bits, element i of the stream.
  float uniform(uint64_t i) const { return (block(i >> 2)[i & 3] >> 8) * (1.0f / 16777216.0f); }
  uint32_t bits(uint64_t i) const { return block(i >> 2)[i & 3]; }
  // Standard normal, element i of the stream (Box-Muller on one block; two normals per pair of
  // words).
  float normal(uint64_t i) const {
    auto b = block(i >> 1);
    int k = int(i & 1);
    double u1 = (b[0] + 1.0) * (1.0 / 4294967297.0);  // (0, 1]
    double u2 = b[1] * (1.0 / 4294967296.0);
    double r = std::sqrt(-2.0 * std::log(u1));
    constexpr double two_pi = 6.283185307179586;
    return float(k == 0 ? r * std::cos(two_pi * u2) : r * std::sin(two_pi * u2));
  }
  // Fills out[0..n) with normals i0 .. i0+n-1 of the stream.
  void fill_normal(float* out, uint64_t n, uint64_t i0 = 0) const {
    for (uint64_t j = 0; j < n; ++j) out[j] = normal(i0 + j);
  }
  uint64_t seed() const { return seed_; }
  uint64_t stream() const { return stream_; }

 private:
  uint64_t seed_, stream_;
};

}  // namespace uvit
