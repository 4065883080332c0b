// oneDNN primitives cached on one thread and executed on another (docs/fuzzing.md, finding 13):
// the C API may be called from any thread, and serve runs its jobs on a worker thread. Under ASan
// the old code overflowed the executing thread's smaller oneDNN scratchpad.
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "uvit/nn.hpp"

using namespace uvit;

namespace {

Conv2dShape conv3x3(int C, int H) {
  Conv2dShape s;
  s.Cin = s.Cout = C;
  s.H = s.W = H;
  s.kh = s.kw = 3;
  s.pt = s.pl = s.pb = s.pr = 1;
  return s;
}

std::vector<float> ramp(size_t n, float scale) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * float(int(i % 17) - 8);
  return v;
}

}  // namespace

TEST(OneDnnThreads, ConvCachedOnOneThreadRunsOnAnother) {
  // Thread A makes (and caches) the large convolution, whose im2col needs a scratchpad of MBs.
  const Conv2dShape big = conv3x3(64, 64), small = conv3x3(4, 8);
  const auto x = ramp(size_t(big.Cin) * big.H * big.W, 0.01f);
  const auto w = ramp(size_t(big.Cout) * big.Cin * 9, 0.001f);
  std::vector<float> ya(x.size()), yb(x.size(), -1.f);
  std::thread([&] {
    nn::conv2d(big, x.data(), w.data(), nullptr, ya.data(), nn::ConvImpl::OneDnnPlain);
  }).join();
  // Thread B makes a small one first, then runs the cached large one.
  std::thread([&] {
    const auto xs = ramp(size_t(small.Cin) * small.H * small.W, 0.1f);
    const auto ws = ramp(size_t(small.Cout) * small.Cin * 9, 0.1f);
    std::vector<float> ys(xs.size());
    nn::conv2d(small, xs.data(), ws.data(), nullptr, ys.data(), nn::ConvImpl::OneDnnPlain);
    nn::conv2d(big, x.data(), w.data(), nullptr, yb.data(), nn::ConvImpl::OneDnnPlain);
  }).join();
  EXPECT_EQ(ya, yb);  // the same primitive on the same input: the same bits
}
