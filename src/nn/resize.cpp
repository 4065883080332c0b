// Bilinear resize with align_corners=False, as torch.nn.functional.interpolate (no antialias) on
// the CPU: fp32 source coordinates src = max(scale * (dst + 0.5) - 0.5, 0), scale = in / out.
// And TF 1.x's legacy ResizeBilinear (the FID graph's; docs/evaluation.md "The TF graph's input
// pipeline"): src = dst * scale, lerped as TF orders the float operations.
#include <algorithm>
#include <cmath>
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

// Contraction off: TF rounds each product and difference (top = tl + (tr - tl) * x_lerp), and
// -march=native would fuse them into FMAs, off by an ulp from the graph's arithmetic.
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
namespace {
// TF's compute_interpolation_weights for the legacy scaler: in = dst * scale (fp32),
// lower = floor(in), upper = min(ceil(in), in_size - 1), lerp = in - floor(in).
Taps taps_tf1(int in, int out) {
  Taps t;
  t.i0.resize(out), t.i1.resize(out), t.l1.resize(out);
  const float scale = float(in) / float(out);
  for (int d = 0; d < out; ++d) {
    const float src = float(d) * scale;
    const float f = std::floor(src);
    t.i0[d] = std::max(int(f), 0);
    t.i1[d] = std::min(int(std::ceil(src)), in - 1);
    t.l1[d] = src - f;
  }
  return t;
}
}  // namespace

void resize_bilinear_tf1(const float* x, float* y, int planes, int H, int W, int out_h, int out_w) {
  const Taps th = taps_tf1(H, out_h), tw = taps_tf1(W, out_w);
#pragma omp parallel for schedule(static)
  for (long p = 0; p < planes; ++p) {
    const float* xp = x + p * long(H) * W;
    float* yp = y + p * long(out_h) * out_w;
    for (int i = 0; i < out_h; ++i) {
      const float* r0 = xp + long(th.i0[i]) * W;
      const float* r1 = xp + long(th.i1[i]) * W;
      const float yl = th.l1[i];
      for (int j = 0; j < out_w; ++j) {
        const int j0 = tw.i0[j], j1 = tw.i1[j];
        const float xl = tw.l1[j];
        const float top = r0[j0] + (r0[j1] - r0[j0]) * xl;
        const float bottom = r1[j0] + (r1[j1] - r1[j0]) * xl;
        yp[long(i) * out_w + j] = top + (bottom - top) * yl;
      }
    }
  }
}
#pragma GCC pop_options

}  // namespace uvit::nn
