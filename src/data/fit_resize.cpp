// FiT's pixel-side resize (whlzy/FiT fit/data/in1k_dataset.py:resize_arr, docs/fit.md "Training on
// your own images"): at most (S / g)^2 tokens of g = VAE factor x patch pixels, aspect ratio kept.
#include <cmath>

#include "uvit/error.hpp"
#include "uvit/image.hpp"

namespace uvit {

std::array<int, 2> fit_resize_size(int w, int h, int image_size, int granularity) {
  UVIT_CHECK(w > 0 && h > 0 && image_size > 0 && granularity > 0, "fit resize: bad size ", w, " x ",
             h, " / image size ", image_size, " / granularity ", granularity);
  // float64 as the official numpy/Python arithmetic, in its operation order.
  double nw = w, nh = h;
  const double g = granularity;
  if (double(w) * h >= double(image_size) * image_size) {
    nw = std::sqrt(double(w) / h) * image_size;
    nh = nw * h / w;
  } else if (w < granularity) {  // upsampled so that the thin side holds one token
    nw = g;
    nh = g * h / w;
  } else if (h < granularity) {
    nh = g;
    nw = g * w / h;
  }
  // int(x / g) * g: truncation, all values positive.
  return {int(nw / g) * granularity, int(nh / g) * granularity};
}

Image fit_resize(const Image& in, int image_size, int granularity, const std::string& what) {
  const auto [w, h] = fit_resize_size(in.w, in.h, image_size, granularity);
  UVIT_CHECK(w > 0 && h > 0, what, ": ", in.w, " x ", in.h, " is too thin for FiT's resize (", w,
             " x ", h, " at granularity ", granularity, ")");
  if (w == in.w && h == in.h) return in;
  return resize_pil(in, w, h, Resample::Bicubic);
}

}  // namespace uvit
