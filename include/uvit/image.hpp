// 8-bit images: PNG writing (our own encoder, zlib, text metadata), reading (stb_image), the
// official float -> uint8 quantisation, PIL-compatible resampling for the dataset crops, grids and
// loss plots.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace uvit {

struct Image {
  int w = 0, h = 0, c = 0;  // c: 1 (gray), 2 (gray+alpha), 3 (RGB), 4 (RGBA)
  std::vector<uint8_t> px;  // HWC, row-major
  Image() = default;
  Image(int w_, int h_, int c_, uint8_t fill = 0)
      : w(w_), h(h_), c(c_), px(size_t(w_) * h_ * c_, fill) {}
  uint8_t& at(int y, int x, int ch) { return px[(size_t(y) * w + x) * c + ch]; }
  uint8_t at(int y, int x, int ch) const { return px[(size_t(y) * w + x) * c + ch]; }
};

// PNG bytes (8-bit, colour type from c), tEXt chunks for Latin-1 text and iTXt for UTF-8 text.
std::vector<uint8_t> encode_png(const uint8_t* hwc, int w, int h, int c,
                                const std::map<std::string, std::string>& text = {});
// Written atomically.
void write_png(const std::string& path, const uint8_t* hwc, int w, int h, int c,
               const std::map<std::string, std::string>& text = {});
void write_png(const std::string& path, const Image& im,
               const std::map<std::string, std::string>& text = {});
// Whether the file `path` starts with the PNG signature (false when it cannot be read).
bool is_png_file(const std::string& path);
// The tEXt/iTXt chunks of a PNG file (CRC-checked).
std::map<std::string, std::string> read_png_text(const std::string& path);
// The same reading only the text chunks and other chunks of up to 64 KiB (the signature, IHDR),
// CRC-checked; a larger chunk (the image data) is skipped by its length, and a file that ends
// before the IEND chunk the lengths lead to fails. A few small reads, for scanning many files.
std::map<std::string, std::string> read_png_text_head(const std::string& path);
// The same from PNG bytes in memory; `name` names them in errors.
std::map<std::string, std::string> decode_png_text(const uint8_t* data, size_t size,
                                                   const std::string& name);

// PNG/JPEG/GIF/BMP/... via stb_image. want_c = 0 keeps the file's channels; 1..4 converts (3: RGB
// as PIL's convert("RGB") for gray and palette images).
Image read_image(const std::string& path, int want_c = 0);
Image decode_image(const uint8_t* data, size_t n, const std::string& name, int want_c = 0);
// {width, height} from the file's header alone (no pixels decoded).
std::array<int, 2> read_image_size(const std::string& path);

// The official output quantisation: u = clamp(0.5 * (v + 1), 0, 1) (datasets.unpreprocess), then
// torchvision save_image: uint8(clamp(u * 255 + 0.5, 0, 255)) truncated, all in float32. NaN -> 0.
uint8_t to_uint8(float v);
// CHW float in [-1, 1] -> HWC uint8 image.
Image to_image(const float* chw, int c, int h, int w);

// torchvision make_grid: min(nrow, n) images per row, `padding` pixels of pad_value around and
// between (default 2, as save_image). One image is returned as is (torchvision squeezes a single
// image). All images must share w, h, c.
Image make_grid(const std::vector<Image>& images, int nrow = 8, int padding = 2,
                uint8_t pad_value = 0);

// PIL resampling (Image.resize on 8-bit images): separable, antialiased when shrinking, fixed-point
// coefficients and a uint8 round between the horizontal and vertical passes.
enum class Resample { Box, Bilinear, Bicubic, Lanczos };
Image resize_pil(const Image& in, int out_w, int out_h, Resample f);
// PIL Image.crop((left, top, left + w, top + h)): pixels outside the image are 0.
Image crop(const Image& in, int left, int top, int w, int h);
// guided-diffusion center_crop_arr: BOX-halve while min side >= 2*res, BICUBIC-resize the min side
// to res (sizes rounded half to even, as Python's round), crop the centre res x res.
Image center_crop_arr(const Image& in, int res);
// Horizontal mirror.
Image flip_horizontal(const Image& in);
// FiT's resize_arr (docs/fit.md "Training on your own images"): the {width, height} an image of
// w x h becomes for at most (image_size / granularity)^2 tokens of granularity (VAE factor x
// patch) pixels, aspect ratio kept; float64 and truncation as the official code. A side may be 0
// (very thin images), which fit_resize refuses.
std::array<int, 2> fit_resize_size(int w, int h, int image_size, int granularity);
// The image at that size (PIL BICUBIC; unchanged when the size is); `what` names it in errors.
Image fit_resize(const Image& in, int image_size, int granularity, const std::string& what);

// A line plot (e.g. the loss curve) as an RGB image: axes, ticks with small digit labels, one
// polyline per series. log_y plots log10(y) (non-positive values are skipped).
struct PlotSeries {
  std::vector<double> x, y;
  uint8_t r = 31, g = 119, b = 180;
};
Image plot_lines(const std::vector<PlotSeries>& series, int w = 640, int h = 400,
                 bool log_y = false);
void write_plot_png(const std::string& path, const std::vector<PlotSeries>& series, int w = 640,
                    int h = 400, bool log_y = false,
                    const std::map<std::string, std::string>& text = {});

}  // namespace uvit
