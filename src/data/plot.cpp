// A minimal line-plot renderer for loss curves: white canvas, axes, ticks with labels in a built-in
// 3x5 pixel font (digits, '.', '-', '+', 'e'), and one anti-alias-free polyline per series.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "uvit/error.hpp"
#include "uvit/image.hpp"

namespace uvit {
namespace {

// 3x5 glyphs, rows top to bottom, 3 bits per row (MSB = left column).
int glyph(char ch) {
  switch (ch) {
    case '0':
      return 0x7B6F;
    case '1':
      return 0x2C97;
    case '2':
      return 0x73E7;
    case '3':
      return 0x72CF;
    case '4':
      return 0x5BC9;
    case '5':
      return 0x79CF;
    case '6':
      return 0x79EF;
    case '7':
      return 0x7249;
    case '8':
      return 0x7BEF;
    case '9':
      return 0x7BCF;
    case '.':
      return 0x0002;
    case '-':
      return 0x01C0;
    case '+':
      return 0x05D0;
    case 'e':
      return 0x0FE7;
    default:
      return 0;
  }
}

struct Canvas {
  Image im;
  void set(int x, int y, uint8_t r, uint8_t g, uint8_t b) {
    if (x < 0 || y < 0 || x >= im.w || y >= im.h) return;
    im.at(y, x, 0) = r, im.at(y, x, 1) = g, im.at(y, x, 2) = b;
  }
  void line(int x0, int y0, int x1, int y1, uint8_t r, uint8_t g, uint8_t b) {  // Bresenham
    int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0), sx = x0 < x1 ? 1 : -1,
        sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    while (true) {
      set(x0, y0, r, g, b);
      if (x0 == x1 && y0 == y1) break;
      int e2 = 2 * err;
      if (e2 >= dy) err += dy, x0 += sx;
      if (e2 <= dx) err += dx, y0 += sy;
    }
  }
  // Text at scale 2; (x, y) is the top-left corner.
  void text(int x, int y, const std::string& s) {
    for (char ch : s) {
      int gl = glyph(ch);
      for (int row = 0; row < 5; ++row)
        for (int col = 0; col < 3; ++col)
          if (gl >> (14 - (row * 3 + col)) & 1)
            for (int a = 0; a < 2; ++a)
              for (int b = 0; b < 2; ++b) set(x + col * 2 + a, y + row * 2 + b, 40, 40, 40);
      x += 8;
    }
  }
};

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

}  // namespace

Image plot_lines(const std::vector<PlotSeries>& series, int w, int h, bool log_y) {
  UVIT_CHECK(w >= 120 && h >= 80, "plot: canvas ", w, "x", h, " too small (need 120x80)");
  Canvas cv{Image(w, h, 3, 255)};
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  auto ty = [&](double y) { return log_y ? std::log10(y) : y; };
  auto usable = [&](double x, double y) {
    return std::isfinite(x) && std::isfinite(y) && (!log_y || y > 0);
  };
  for (const auto& s : series) {
    UVIT_CHECK(s.x.size() == s.y.size(), "plot: series has ", s.x.size(), " x values and ",
               s.y.size(), " y values");
    for (size_t i = 0; i < s.x.size(); ++i)
      if (usable(s.x[i], s.y[i])) {
        x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]);
        y0 = std::min(y0, ty(s.y[i])), y1 = std::max(y1, ty(s.y[i]));
      }
  }
  if (!(x0 <= x1)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;  // nothing to draw: empty axes
  if (x1 == x0) x0 -= 0.5, x1 += 0.5;
  if (y1 == y0) y0 -= 0.5, y1 += 0.5;
  const int left = 70, right = w - 15, top = 15, bottom = h - 30;
  auto px = [&](double x) {
    return left + int(std::lround((x - x0) / (x1 - x0) * (right - left)));
  };
  auto py = [&](double y) {
    return bottom - int(std::lround((y - y0) / (y1 - y0) * (bottom - top)));
  };
  cv.line(left, top, left, bottom, 0, 0, 0);
  cv.line(left, bottom, right, bottom, 0, 0, 0);
  for (int i = 0; i <= 4; ++i) {
    double xv = x0 + (x1 - x0) * i / 4, yv = y0 + (y1 - y0) * i / 4;
    int X = px(xv), Y = py(yv);
    cv.line(X, bottom, X, bottom + 4, 0, 0, 0);
    std::string xs = fmt(xv);
    cv.text(X - int(xs.size()) * 4, bottom + 8, xs);
    cv.line(left - 4, Y, left, Y, 0, 0, 0);
    for (int x = left + 1; x < right; x += 4) cv.set(x, Y, 220, 220, 220);  // dotted grid
    std::string ys = fmt(log_y ? std::pow(10.0, yv) : yv);
    cv.text(left - 8 - int(ys.size()) * 8, Y - 5, ys);
  }
  for (const auto& s : series) {
    bool have = false;
    int lx = 0, ly = 0;
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!usable(s.x[i], s.y[i])) continue;
      int X = px(s.x[i]), Y = py(ty(s.y[i]));
      if (have)
        cv.line(lx, ly, X, Y, s.r, s.g, s.b);
      else
        cv.set(X, Y, s.r, s.g, s.b);
      lx = X, ly = Y, have = true;
    }
  }
  return cv.im;
}

void write_plot_png(const std::string& path, const std::vector<PlotSeries>& series, int w, int h,
                    bool log_y, const std::map<std::string, std::string>& text) {
  Image im = plot_lines(series, w, h, log_y);
  write_png(path, im, text);
}

}  // namespace uvit
