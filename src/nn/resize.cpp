// Bilinear resize with align_corners=False, as torch.nn.functional.interpolate (no antialias) on
// the CPU: fp32 source coordinates src = max(scale * (dst + 0.5) - 0.5, 0), scale = in / out.
#include <algorithm>
#include <vector>

#include "uvit/inception.hpp"

namespace uvit::nn {

namespace {
struct Taps {
  std::vector<int> i0, i1;
  std::vector<float> l0, l1;
};
Taps taps(int in, int out) {
  Taps t;
  t.i0.resize(out), t.i1.resize(out), t.l0.resize(out), t.l1.resize(out);
  const float scale = float(in) / float(out);
  for (int d = 0; d < out; ++d) {
    const float src = std::max(scale * (float(d) + 0.5f) - 0.5f, 0.0f);
    const int i0 = int(src);
    t.i0[d] = i0;
    t.i1[d] = i0 + (i0 < in - 1 ? 1 : 0);
    const float l1 = std::min(std::max(src - float(i0), 0.0f), 1.0f);
    t.l1[d] = l1;
    t.l0[d] = 1.0f - l1;
  }
  return t;
}
}  // namespace

void resize_bilinear(const float* x, float* y, int planes, int H, int W, int out_h, int out_w) {
  const Taps th = taps(H, out_h), tw = taps(W, out_w);
#pragma omp parallel for schedule(static)
  for (long p = 0; p < planes; ++p) {
    const float* xp = x + p * long(H) * W;
    float* yp = y + p * long(out_h) * out_w;
    for (int i = 0; i < out_h; ++i) {
      const float* r0 = xp + long(th.i0[i]) * W;
      const float* r1 = xp + long(th.i1[i]) * W;
      const float a0 = th.l0[i], a1 = th.l1[i];
      for (int j = 0; j < out_w; ++j) {
        const int j0 = tw.i0[j], j1 = tw.i1[j];
        const float b0 = tw.l0[j], b1 = tw.l1[j];
        yp[long(i) * out_w + j] =
            a0 * (b0 * r0[j0] + b1 * r0[j1]) + a1 * (b0 * r1[j0] + b1 * r1[j1]);
      }
    }
  }
}

}  // namespace uvit::nn
