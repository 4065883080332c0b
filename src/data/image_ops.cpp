// Pixel operations that must match the official Python pipeline bit for bit: the output
// quantisation (unpreprocess + torchvision save_image), torchvision make_grid, and PIL's resampling
// and cropping used by the CelebA and ImageNet transforms.
//
// Floating-point contraction (FMA) would change roundings relative to PyTorch's and PIL's separate
// multiply and add, so it is switched off for this file.
#pragma GCC optimize("fp-contract=off")

#include <algorithm>
#include <cmath>

#include "uvit/error.hpp"
#include "uvit/image.hpp"

namespace uvit {

uint8_t to_uint8(float v) {
  if (std::isnan(v)) return 0;
  float u = 0.5f * (v + 1.0f);  // datasets.unpreprocess, float32
  u = std::min(std::max(u, 0.0f), 1.0f);
  float s = u * 255.0f;  // save_image: mul(255).add_(0.5).clamp_(0, 255).to(uint8)
  s = s + 0.5f;
  s = std::min(std::max(s, 0.0f), 255.0f);
  return uint8_t(s);  // truncation == floor for s >= 0
}

Image to_image(const float* chw, int c, int h, int w) {
  Image im(w, h, c);
  for (int ch = 0; ch < c; ++ch)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) im.at(y, x, ch) = to_uint8(chw[(size_t(ch) * h + y) * w + x]);
  return im;
}

Image make_grid(const std::vector<Image>& images, int nrow, int padding, uint8_t pad_value) {
  UVIT_CHECK(!images.empty(), "make_grid: no images");
  UVIT_CHECK(nrow > 0 && padding >= 0, "make_grid: bad nrow ", nrow, " or padding ", padding);
  const Image& f = images[0];
  for (const Image& im : images)
    UVIT_CHECK(im.w == f.w && im.h == f.h && im.c == f.c, "make_grid: images differ in shape (",
               im.w, "x", im.h, "x", im.c, " vs ", f.w, "x", f.h, "x", f.c, ")");
  if (images.size() == 1) return f;
  int n = int(images.size()), xmaps = std::min(nrow, n), ymaps = (n + xmaps - 1) / xmaps;
  int cell_h = f.h + padding, cell_w = f.w + padding;
  Image g(cell_w * xmaps + padding, cell_h * ymaps + padding, f.c, pad_value);
  for (int k = 0; k < n; ++k) {
    int oy = (k / xmaps) * cell_h + padding, ox = (k % xmaps) * cell_w + padding;
    for (int y = 0; y < f.h; ++y)
      std::copy_n(&images[k].px[size_t(y) * f.w * f.c], size_t(f.w) * f.c,
                  &g.px[(size_t(oy + y) * g.w + ox) * f.c]);
  }
  return g;
}

Image crop(const Image& in, int left, int top, int w, int h) {
  UVIT_CHECK(w > 0 && h > 0, "crop: bad size ", w, "x", h);
  Image out(w, h, in.c, 0);
  for (int y = 0; y < h; ++y) {
    int sy = top + y;
    if (sy < 0 || sy >= in.h) continue;
    for (int x = 0; x < w; ++x) {
      int sx = left + x;
      if (sx < 0 || sx >= in.w) continue;
      for (int ch = 0; ch < in.c; ++ch) out.at(y, x, ch) = in.at(sy, sx, ch);
    }
  }
  return out;
}

Image flip_horizontal(const Image& in) {
  Image out(in.w, in.h, in.c);
  for (int y = 0; y < in.h; ++y)
    for (int x = 0; x < in.w; ++x)
      for (int ch = 0; ch < in.c; ++ch) out.at(y, in.w - 1 - x, ch) = in.at(y, x, ch);
  return out;
}

// ---- PIL resampling (Pillow's Resample.c, 8 bits per channel)
// ------------------------------------

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

double filter_value(Resample f, double x) {
  switch (f) {
    case Resample::Box:
      return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0;
    case Resample::Bilinear:
      if (x < 0.0) x = -x;
      return x < 1.0 ? 1.0 - x : 0.0;
    case Resample::Bicubic: {
      constexpr double a = -0.5;
      if (x < 0.0) x = -x;
      if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
      if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
      return 0.0;
    }
    case Resample::Lanczos: {
      auto sinc = [](double v) {
        if (v == 0.0) return 1.0;
        v = v * M_PI;
        return std::sin(v) / v;
      };
      return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3) : 0.0;
    }
  }
  return 0.0;
}

double filter_support(Resample f) {
  switch (f) {
    case Resample::Box:
      return 0.5;
    case Resample::Bilinear:
      return 1.0;
    case Resample::Bicubic:
      return 2.0;
    case Resample::Lanczos:
      return 3.0;
  }
  return 1.0;
}

// Per output position: first input index, tap count and fixed-point weights.
struct Coeffs {
  int ksize = 0;
  std::vector<int> xmin, xcount;
  std::vector<int32_t> k;  // out_size * ksize
};

Coeffs precompute(int in_size, int out_size, Resample f) {
  double scale = double(float(in_size)) / out_size, filterscale = std::max(scale, 1.0);
  double support = filter_support(f) * filterscale;
  Coeffs c;
  c.ksize = int(std::ceil(support)) * 2 + 1;
  c.xmin.resize(out_size);
  c.xcount.resize(out_size);
  c.k.assign(size_t(out_size) * c.ksize, 0);
  std::vector<double> w(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    double center = (xx + 0.5) * scale, ss = 1.0 / filterscale, ww = 0.0;
    int xmin = int(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = int(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    for (int x = 0; x < xmax; ++x) {
      w[x] = filter_value(f, (x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    for (int x = 0; x < xmax; ++x) {
      double v = ww != 0.0 ? w[x] / ww : w[x];
      c.k[size_t(xx) * c.ksize + x] = v < 0 ? int32_t(-0.5 + v * (1 << kPrecisionBits))
                                            : int32_t(0.5 + v * (1 << kPrecisionBits));
    }
    c.xmin[xx] = xmin;
    c.xcount[xx] = xmax;
  }
  return c;
}

uint8_t clip8(int32_t v) {
  int32_t s = v >> kPrecisionBits;  // arithmetic shift, as Pillow
  return uint8_t(s < 0 ? 0 : s > 255 ? 255 : s);
}

Image resample_horizontal(const Image& in, int out_w, Resample f) {
  Coeffs c = precompute(in.w, out_w, f);
  Image out(out_w, in.h, in.c);
  for (int y = 0; y < in.h; ++y)
    for (int xx = 0; xx < out_w; ++xx) {
      const int32_t* k = &c.k[size_t(xx) * c.ksize];
      for (int ch = 0; ch < in.c; ++ch) {
        int32_t ss = 1 << (kPrecisionBits - 1);
        for (int x = 0; x < c.xcount[xx]; ++x) ss += int32_t(in.at(y, c.xmin[xx] + x, ch)) * k[x];
        out.at(y, xx, ch) = clip8(ss);
      }
    }
  return out;
}

Image resample_vertical(const Image& in, int out_h, Resample f) {
  Coeffs c = precompute(in.h, out_h, f);
  Image out(in.w, out_h, in.c);
  for (int yy = 0; yy < out_h; ++yy) {
    const int32_t* k = &c.k[size_t(yy) * c.ksize];
    for (int x = 0; x < in.w; ++x)
      for (int ch = 0; ch < in.c; ++ch) {
        int32_t ss = 1 << (kPrecisionBits - 1);
        for (int y = 0; y < c.xcount[yy]; ++y) ss += int32_t(in.at(c.xmin[yy] + y, x, ch)) * k[y];
        out.at(yy, x, ch) = clip8(ss);
      }
  }
  return out;
}

}  // namespace

Image resize_pil(const Image& in, int out_w, int out_h, Resample f) {
  UVIT_CHECK(out_w > 0 && out_h > 0, "resize: bad output size ", out_w, "x", out_h);
  UVIT_CHECK(in.w > 0 && in.h > 0, "resize: empty input image");
  // Pillow runs the horizontal pass first and skips a pass whose size does not change.
  Image t = out_w != in.w ? resample_horizontal(in, out_w, f) : in;
  return out_h != in.h ? resample_vertical(t, out_h, f) : t;
}

Image center_crop_arr(const Image& in, int res) {
  UVIT_CHECK(res > 0, "center_crop_arr: bad resolution ", res);
  Image im = in;
  while (std::min(im.w, im.h) >= 2 * res) im = resize_pil(im, im.w / 2, im.h / 2, Resample::Box);
  double scale = double(res) / std::min(im.w, im.h);
  // Python's round(): half to even, which nearbyint gives in the default rounding mode.
  int nw = int(std::nearbyint(im.w * scale)), nh = int(std::nearbyint(im.h * scale));
  im = resize_pil(im, nw, nh, Resample::Bicubic);
  return crop(im, (im.w - res) / 2, (im.h - res) / 2, res, res);
}

}  // namespace uvit
