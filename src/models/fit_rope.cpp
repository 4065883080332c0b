#include "models/fit_rope.hpp"

#include <algorithm>
#include <cmath>

#include "uvit/error.hpp"

namespace uvit {

namespace {
constexpr const char* kNames[] = {"normal",         "linear",       "ntk-aware", "ntk-aware-pro1",
                                  "ntk-aware-pro2", "ntk-by-parts", "yarn"};

// find_correction_range (rope.py, from YaRN): the frequency indices whose wavelength, over the
// training length, sits between num_rotations low_rot and high_rot; in double like Python math.
void correction_range(double low_rot, double high_rot, int dim, double base, int max_pos, int& lo,
                      int& hi) {
  auto factor = [&](double rot) {
    return dim * std::log(max_pos / (rot * 2 * M_PI)) / (2 * std::log(base));
  };
  lo = std::max(int(std::floor(factor(low_rot))), 0);
  hi = std::min(int(std::ceil(factor(high_rot))), dim - 1);
}

// 1 - linear_ramp_mask(lo, hi, n): 1 below lo, 0 above hi, float32.
std::vector<float> keep_mask(int lo, int hi, int n) {
  // (arange(n) - lo) / (hi - lo) in float32, hi nudged by 0.001 when equal (the Python scalar).
  const float span = float((lo == hi ? hi + 0.001 : double(hi)) - lo);
  std::vector<float> m(n);
  for (int k = 0; k < n; ++k) m[k] = 1.f - std::clamp((float(k) - float(lo)) / span, 0.f, 1.f);
  return m;
}

// get_proportion: sqrt(ln L_test / ln L_train) with L_test doubled (as the official), 1 when the
// doubled length does not exceed L_train.
float proportion(long test, long train) {
  const long t2 = 2 * test;
  if (float(double(t2) / double(train)) <= 1.f) return 1.f;
  return std::sqrt(std::log(float(t2)) / std::log(float(train)));
}
}  // namespace

const char* fit_rope_names() {
  return "normal, linear, ntk-aware, ntk-aware-pro1, ntk-aware-pro2, ntk-by-parts, yarn";
}

bool fit_rope_known(const std::string& s) {
  return std::find(std::begin(kNames), std::end(kNames), s) != std::end(kNames);
}

std::vector<float> fit_rope_freqs(const FitRope& r, int dim, int max_pe_len) {
  const int n = dim / 2;
  const float theta = float(r.theta);
  // base^(2k/dim) in float32 (torch: theta ** (arange(0, dim, 2).float() / dim)).
  auto powers = [&](float base) {
    std::vector<float> p(n);
    for (int k = 0; k < n; ++k) p[k] = std::pow(base, float(2 * k) / float(dim));
    return p;
  };
  std::vector<float> f(n);
  if (!r.scaled()) {
    const auto p = powers(theta);
    for (int k = 0; k < n; ++k) f[k] = 1.f / p[k];
    return f;
  }
  UVIT_CHECK(r.ori_max_pe_len > 0,
             "nnet.ori_max_pe_len must be a positive integer for "
             "custom_freqs ",
             r.custom_freqs);
  const float scale = std::max(float(max_pe_len) / float(r.ori_max_pe_len), 1.f);
  const auto base = powers(theta);
  // find_newbase_ntk: theta * scale^(dim / (dim - 2)).
  const auto ntk = powers(theta * std::pow(scale, float(double(dim) / double(dim - 2))));
  std::vector<float> lin(n), ext(n), nt(n);
  for (int k = 0; k < n; ++k) {
    ext[k] = 1.f / base[k];
    lin[k] = 1.f / (scale * base[k]);
    nt[k] = 1.f / ntk[k];
  }
  const std::string& m = r.custom_freqs;
  if (m == "linear") return lin;
  if (m == "ntk-aware" || m == "ntk-aware-pro1" || m == "ntk-aware-pro2") return nt;
  int lo, hi;
  if (m == "ntk-by-parts") {
    correction_range(1.25, 0.75, dim, r.theta, r.ori_max_pe_len, lo, hi);
    const auto a = keep_mask(lo, hi, n);
    correction_range(16, 2, dim, r.theta, r.ori_max_pe_len, lo, hi);
    const auto b = keep_mask(lo, hi, n);
    for (int k = 0; k < n; ++k) {
      const float mix = lin[k] * (1 - a[k]) + nt[k] * a[k];
      f[k] = mix * (1 - b[k]) + ext[k] * b[k];
    }
    return f;
  }
  UVIT_CHECK(m == "yarn", "nnet.custom_freqs \"", m, "\" is not one of ", fit_rope_names());
  correction_range(32, 1, dim, r.theta, r.ori_max_pe_len, lo, hi);
  const auto a = keep_mask(lo, hi, n);
  for (int k = 0; k < n; ++k) f[k] = lin[k] * (1 - a[k]) + ext[k] * a[k];
  return f;
}

float fit_rope_magnitude(const FitRope& r, int pe_h, int pe_w) {
  const std::string& m = r.custom_freqs;
  const long ori = r.ori_max_pe_len;
  if (m == "yarn") {
    const float s = std::max(float(std::max(pe_h, pe_w)) / float(ori), 1.f);
    return s <= 1.f ? 1.f : 0.1f * std::log(s) + 1.f;
  }
  if (m == "ntk-aware-pro1") return proportion(std::max(pe_h, pe_w), ori);
  if (m == "ntk-aware-pro2") return proportion(long(pe_h) * pe_w, ori * ori);
  return 1.f;
}

void fit_rope_tables(const FitRope& r, int gh, int gw, int Dh, float* cos, float* sin) {
  const int dim = Dh / 2, n = dim / 2;
  const int ph = r.max_pe_len_h > 0 && !r.online ? r.max_pe_len_h : gh;
  const int pw = r.max_pe_len_w > 0 && !r.online ? r.max_pe_len_w : gw;
  // Without decouple both axes scale by the longer one.
  const int lh = r.decouple ? ph : std::max(ph, pw), lw = r.decouple ? pw : std::max(ph, pw);
  const auto fh = fit_rope_freqs(r, dim, lh), fw = fit_rope_freqs(r, dim, lw);
  const float mag = fit_rope_magnitude(r, ph, pw);
  for (int i = 0; i < gh; ++i)
    for (int j = 0; j < gw; ++j) {
      const size_t row = (size_t(i) * gw + j) * Dh;
      for (int k = 0; k < n; ++k) {
        const float a = float(i) * fh[k], b = float(j) * fw[k];
        cos[row + 2 * k] = cos[row + 2 * k + 1] = std::cos(a) * mag;
        sin[row + 2 * k] = sin[row + 2 * k + 1] = std::sin(a) * mag;
        cos[row + dim + 2 * k] = cos[row + dim + 2 * k + 1] = std::cos(b) * mag;
        sin[row + dim + 2 * k] = sin[row + dim + 2 * k + 1] = std::sin(b) * mag;
      }
    }
}

}  // namespace uvit
