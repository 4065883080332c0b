// DiT's ADM diffusion (include/uvit/adm.hpp, docs/dit.md): respacing, schedule arrays, DDPM/DDIM
// steps and the hybrid training loss with its gradient, all in double.
//
// Floating-point contraction (FMA) is off so the schedule arrays round like numpy's separate
// multiply and add (tests/reference/adm_reference.py compares them).
#pragma GCC optimize("fp-contract=off")

#include "uvit/adm.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>

#include "uvit/error.hpp"

namespace uvit {
namespace {

// A plain non-negative decimal integer with optional surrounding spaces ("250", " 25 ").
int parse_count(const std::string& s, const std::string& section) {
  size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  UVIT_CHECK(a < b, "space_timesteps: bad section string '", section, "' (empty count)");
  long v = 0;
  for (size_t k = a; k < b; ++k) {
    UVIT_CHECK(std::isdigit(static_cast<unsigned char>(s[k])),
               "space_timesteps: bad section string '", section, "' ('", s.substr(a, b - a),
               "' is not a non-negative integer)");
    v = v * 10 + (s[k] - '0');
    UVIT_CHECK(v <= 1000000000, "space_timesteps: count in '", section, "' is too large");
  }
  return int(v);
}

// Python's round() of a double to an integer: nearest, ties to even.
long round_half_even(double x) {
  const double f = std::floor(x), d = x - f;
  long r = long(f);
  if (d > 0.5 || (d == 0.5 && (r % 2 != 0))) ++r;
  return r;
}

constexpr double kLn2 = 0.69314718055994530942;
constexpr double kBin = 1.0 / 255.0;

// The tanh approximation of the standard normal CDF (diffusion_utils.approx_standard_normal_cdf)
// and its derivative.
inline double approx_cdf(double u) {
  const double k = std::sqrt(2.0 / M_PI);
  return 0.5 * (1.0 + std::tanh(k * (u + 0.044715 * u * u * u)));
}
inline double approx_pdf(double u) {
  const double k = std::sqrt(2.0 / M_PI);
  const double th = std::tanh(k * (u + 0.044715 * u * u * u));
  return 0.5 * (1.0 - th * th) * k * (1.0 + 3.0 * 0.044715 * u * u);
}

// -log p of the discretized Gaussian decoder (bins of width 2/255, edge bins open) for x0 given
// mean and log variance, in nats, and its derivative with respect to the log variance.
// Probabilities are clamped at 1e-12 (gradient 0 below). `low`/`high`: x0 < -0.999 / x0 > 0.999
// (compared in the caller's element type, as PyTorch compares a tensor with a Python float).
struct Nll {
  double value, d_logvar;
};
Nll decoder_nll(double x0, bool low, bool high, double mean, double logvar) {
  const double c = x0 - mean, inv = std::exp(-0.5 * logvar);
  const double up = inv * (c + kBin), lo = inv * (c - kBin);
  // d up / d logvar = -up/2, d lo / d logvar = -lo/2
  const double dup = -0.5 * up, dlo = -0.5 * lo;
  double p, dp;
  if (low) {
    p = approx_cdf(up);
    dp = approx_pdf(up) * dup;
  } else if (high) {
    p = 1.0 - approx_cdf(lo);
    dp = -approx_pdf(lo) * dlo;
  } else {
    p = approx_cdf(up) - approx_cdf(lo);
    dp = approx_pdf(up) * dup - approx_pdf(lo) * dlo;
  }
  if (p < 1e-12) return {-std::log(1e-12), 0.0};
  return {-std::log(p), -dp / p};
}

}  // namespace

std::vector<double> adm_linear_betas(int num_timesteps) {
  UVIT_CHECK(num_timesteps >= 2, "adm_linear_betas: need at least 2 steps, got ", num_timesteps);
  const double scale = 1000.0 / num_timesteps;
  const double start = scale * 0.0001, end = scale * 0.02;
  const double step = (end - start) / double(num_timesteps - 1);
  std::vector<double> b(static_cast<size_t>(num_timesteps));
  for (int i = 0; i < num_timesteps; ++i) b[size_t(i)] = double(i) * step + start;
  b.back() = end;
  return b;
}

std::vector<int> space_timesteps(int num_timesteps, const std::string& section) {
  UVIT_CHECK(num_timesteps >= 1, "space_timesteps: num_timesteps = ", num_timesteps,
             " must be >= 1");
  std::set<int> steps;
  if (section.rfind("ddim", 0) == 0) {
    const int k = parse_count(section.substr(4), section);
    for (int stride = 1; stride < num_timesteps; ++stride)
      if ((num_timesteps + stride - 1) / stride == k) {
        std::vector<int> out;
        for (int s = 0; s < num_timesteps; s += stride) out.push_back(s);
        return out;
      }
    fail("space_timesteps: cannot create exactly ", k, " steps out of ", num_timesteps,
         " with an integer stride ('", section, "')");
  }
  std::vector<int> counts;
  size_t pos = 0;
  while (true) {
    const size_t comma = section.find(',', pos);
    counts.push_back(parse_count(
        section.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos),
        section));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  const int parts = int(counts.size());
  const int per = num_timesteps / parts, extra = num_timesteps % parts;
  int start = 0;
  for (int p = 0; p < parts; ++p) {
    const int size = per + (p < extra ? 1 : 0), k = counts[size_t(p)];
    UVIT_CHECK(size >= k, "space_timesteps: cannot divide a section of ", size, " steps into ", k,
               " ('", section, "')");
    const double stride = k <= 1 ? 1.0 : double(size - 1) / double(k - 1);
    double cur = 0.0;
    for (int j = 0; j < k; ++j) {
      steps.insert(start + int(round_half_even(cur)));
      cur += stride;
    }
    start += size;
  }
  UVIT_CHECK(!steps.empty(), "space_timesteps: '", section, "' keeps no step");
  return {steps.begin(), steps.end()};
}

AdmDiffusion::AdmDiffusion(std::vector<double> betas) {
  original_num_steps_ = int(betas.size());
  timestep_map_.resize(betas.size());
  for (size_t i = 0; i < betas.size(); ++i) timestep_map_[i] = int(i);
  init(std::move(betas));
}

AdmDiffusion::AdmDiffusion(const std::vector<double>& base_betas,
                           const std::vector<int>& use_timesteps) {
  const int n = int(base_betas.size());
  UVIT_CHECK(n >= 2, "ADM diffusion: need at least 2 base betas, got ", n);
  std::vector<char> keep(size_t(n), 0);
  for (int t : use_timesteps) {
    UVIT_CHECK(t >= 0 && t < n, "ADM diffusion: kept timestep ", t, " outside [0, ", n, ")");
    keep[size_t(t)] = 1;
  }
  original_num_steps_ = n;
  std::vector<double> nb;
  double ac = 1.0, last = 1.0;
  for (int i = 0; i < n; ++i) {
    UVIT_CHECK(base_betas[size_t(i)] > 0 && base_betas[size_t(i)] <= 1, "ADM diffusion: beta_", i,
               " = ", base_betas[size_t(i)], " is not in (0, 1]");
    ac *= 1.0 - base_betas[size_t(i)];  // np.cumprod: sequential products
    if (keep[size_t(i)]) {
      nb.push_back(1.0 - ac / last);
      last = ac;
      timestep_map_.push_back(i);
    }
  }
  init(std::move(nb));
}

AdmDiffusion AdmDiffusion::dit(const std::string& respacing, int diffusion_steps) {
  const std::vector<double> b = adm_linear_betas(diffusion_steps);
  std::vector<int> use;
  if (respacing.empty()) {
    for (int i = 0; i < diffusion_steps; ++i) use.push_back(i);
  } else {
    use = space_timesteps(diffusion_steps, respacing);
  }
  return AdmDiffusion(b, use);
}

void AdmDiffusion::init(std::vector<double> betas) {
  const size_t n = betas.size();
  UVIT_CHECK(n >= 2, "ADM diffusion: need at least 2 steps, got ", n);
  for (size_t i = 0; i < n; ++i)
    UVIT_CHECK(betas[i] > 0 && betas[i] <= 1, "ADM diffusion: beta_", i, " = ", betas[i],
               " is not in (0, 1]");
  betas_ = std::move(betas);
  auto arr = [n] { return std::vector<double>(n); };
  log_betas_ = ac_ = ac_prev_ = ac_next_ = sqrt_ac_ = sqrt_1m_ac_ = log_1m_ac_ = sqrt_recip_ac_ =
      sqrt_recipm1_ac_ = post_var_ = post_logvar_ = coef1_ = coef2_ = large_logvar_ = arr();
  double a = 1.0;
  for (size_t i = 0; i < n; ++i) {
    a *= 1.0 - betas_[i];
    ac_[i] = a;
  }
  for (size_t i = 0; i < n; ++i) {
    const double b = betas_[i], ab = ac_[i];
    ac_prev_[i] = i == 0 ? 1.0 : ac_[i - 1];
    ac_next_[i] = i + 1 < n ? ac_[i + 1] : 0.0;
    log_betas_[i] = std::log(b);
    sqrt_ac_[i] = std::sqrt(ab);
    sqrt_1m_ac_[i] = std::sqrt(1.0 - ab);
    log_1m_ac_[i] = std::log(1.0 - ab);
    sqrt_recip_ac_[i] = std::sqrt(1.0 / ab);
    sqrt_recipm1_ac_[i] = std::sqrt(1.0 / ab - 1);
    post_var_[i] = b * (1.0 - ac_prev_[i]) / (1.0 - ab);
    coef1_[i] = b * std::sqrt(ac_prev_[i]) / (1.0 - ab);
    coef2_[i] = (1.0 - ac_prev_[i]) * std::sqrt(1.0 - b) / (1.0 - ab);
  }
  for (size_t i = 0; i < n; ++i) {
    post_logvar_[i] = std::log(post_var_[i == 0 ? 1 : i]);
    large_logvar_[i] = i == 0 ? std::log(post_var_[1]) : log_betas_[i];
  }
}

void AdmDiffusion::check_index(int i, const char* what) const {
  UVIT_CHECK(i >= 0 && i < num_timesteps(), what, ": index ", i, " outside [0, ", num_timesteps(),
             ")");
}

double AdmDiffusion::network_time(int i) const {
  check_index(i, "ADM network_time");
  return double(timestep_map_[size_t(i)]);
}

double AdmDiffusion::pred_x0(int i, double x_t, double eps) const {
  return sqrt_recip_ac_[size_t(i)] * x_t - sqrt_recipm1_ac_[size_t(i)] * eps;
}

double AdmDiffusion::log_variance(int i, AdmVariance var, double v) const {
  const size_t k = size_t(i);
  switch (var) {
    case AdmVariance::LearnedRange: {
      const double frac = (v + 1) / 2;
      return frac * log_betas_[k] + (1 - frac) * post_logvar_[k];
    }
    case AdmVariance::FixedLarge:
      return large_logvar_[k];
    case AdmVariance::FixedSmall:
      return post_logvar_[k];
  }
  return 0;
}

AdmDiffusion::MeanVar AdmDiffusion::p_mean_variance(int i, double x_t, double eps, double v,
                                                    AdmVariance var) const {
  const double x0 = pred_x0(i, x_t, eps);
  return {coef1_[size_t(i)] * x0 + coef2_[size_t(i)] * x_t, log_variance(i, var, v), x0};
}

AdmDiffusion::QCoeffs AdmDiffusion::q_sample_coeffs(int i) const {
  check_index(i, "ADM q_sample");
  return {sqrt_ac_[size_t(i)], sqrt_1m_ac_[size_t(i)]};
}

template <class T>
void AdmDiffusion::ddpm_step(int i, const T* x, const T* model_out, int model_channels,
                             const T* noise, T* out, int batch, int channels, int64_t n,
                             AdmVariance var) const {
  check_index(i, "ADM DDPM step");
  const bool learned = var == AdmVariance::LearnedRange;
  UVIT_CHECK(learned ? model_channels == 2 * channels : model_channels >= channels,
             "ADM DDPM step: model output has ", model_channels, " channels for ", channels,
             " latent channels", learned ? " (a learned variance needs twice as many)" : "");
  UVIT_CHECK(i == 0 || noise != nullptr, "ADM DDPM step: noise is needed at index ", i);
  for (int b = 0; b < batch; ++b)
    for (int c = 0; c < channels; ++c) {
      const int64_t xo = (int64_t(b) * channels + c) * n;
      const T* eps = model_out + (int64_t(b) * model_channels + c) * n;
      const T* v = learned ? model_out + (int64_t(b) * model_channels + channels + c) * n : nullptr;
      for (int64_t k = 0; k < n; ++k) {
        const MeanVar mv =
            p_mean_variance(i, double(x[xo + k]), double(eps[k]), v ? double(v[k]) : 0.0, var);
        double r = mv.mean;
        if (i != 0) r += std::exp(0.5 * mv.log_variance) * double(noise[xo + k]);
        out[xo + k] = T(r);
      }
    }
}

template <class T>
void AdmDiffusion::ddim_step(int i, const T* x, const T* model_out, int model_channels, T* out,
                             int batch, int channels, int64_t n) const {
  check_index(i, "ADM DDIM step");
  UVIT_CHECK(model_channels >= channels, "ADM DDIM step: model output has ", model_channels,
             " channels for ", channels, " latent channels");
  const size_t k0 = size_t(i);
  const double ap = ac_prev_[k0], sa = std::sqrt(ap), s1 = std::sqrt(1 - ap);
  for (int b = 0; b < batch; ++b)
    for (int c = 0; c < channels; ++c) {
      const int64_t xo = (int64_t(b) * channels + c) * n;
      const T* eps = model_out + (int64_t(b) * model_channels + c) * n;
      for (int64_t k = 0; k < n; ++k) {
        const double xt = double(x[xo + k]);
        const double x0 = pred_x0(i, xt, double(eps[k]));
        const double e = (sqrt_recip_ac_[k0] * xt - x0) / sqrt_recipm1_ac_[k0];
        out[xo + k] = T(x0 * sa + s1 * e);
      }
    }
}

template <class T>
void AdmDiffusion::q_sample(const int* t, const T* x0, const T* noise, T* x_t, int batch,
                            int64_t per_sample) const {
  for (int b = 0; b < batch; ++b) {
    const QCoeffs q = q_sample_coeffs(t[b]);
    const int64_t o = int64_t(b) * per_sample;
    for (int64_t k = 0; k < per_sample; ++k)
      x_t[o + k] = T(q.mean * double(x0[o + k]) + q.std * double(noise[o + k]));
  }
}

template <class T>
AdmDiffusion::LossTerms AdmDiffusion::hybrid_loss(const int* t, const T* x0, const T* noise,
                                                  const T* model_out, bool learn_sigma, int batch,
                                                  int channels, int64_t n, T* grad,
                                                  const std::array<int, 2>* valid,
                                                  int64_t width) const {
  UVIT_CHECK(batch >= 1 && channels >= 1 && n >= 1, "ADM loss: empty batch");
  UVIT_CHECK(!valid || (width >= 1 && n % width == 0), "ADM loss: width ", width,
             " does not divide ", n);
  const int mc = learn_sigma ? 2 * channels : channels;
  const int64_t W = valid ? width : n;  // without `valid`, one row of n
  LossTerms r;
  r.mse.assign(size_t(batch), 0.0);
  if (learn_sigma) r.vb.assign(size_t(batch), 0.0);
  for (int b = 0; b < batch; ++b) {
    const int64_t rows = valid ? valid[b][0] : 1, cols = valid ? valid[b][1] : n;
    UVIT_CHECK(rows >= 1 && cols >= 1 && rows * W <= n && cols <= W, "ADM loss: sample ", b,
               " valid size ", rows, " x ", cols, " outside the ", n / W, " x ", W, " image");
    if (grad && valid) std::fill(grad + int64_t(b) * mc * n, grad + int64_t(b + 1) * mc * n, T(0));
    const double per = double(channels) * double(rows * cols);  // elements of mean_flat
    const double gscale = 1.0 / (double(batch) * per);
    const int i = t[b];
    check_index(i, "ADM loss");
    const size_t k0 = size_t(i);
    const double sa = sqrt_ac_[k0], s1 = sqrt_1m_ac_[k0];
    const double tlv = post_logvar_[k0], dlv_dv = 0.5 * (log_betas_[k0] - post_logvar_[k0]);
    double mse = 0, vb = 0;
    for (int c = 0; c < channels; ++c) {
      const int64_t xc = (int64_t(b) * channels + c) * n;
      const int64_t ec = (int64_t(b) * mc + c) * n, vc = (int64_t(b) * mc + channels + c) * n;
      for (int64_t y = 0; y < rows; ++y) {
        const int64_t xo = xc + y * W, eo = ec + y * W, vo = vc + y * W;
        for (int64_t k = 0; k < cols; ++k) {
          const double x0v = double(x0[xo + k]), z = double(noise[xo + k]);
          const double eps = double(model_out[eo + k]);
          const double d = z - eps;
          mse += d * d;
          if (grad) grad[eo + k] = T(2.0 * (eps - z) * gscale);
          if (!learn_sigma) continue;
          const double xt = sa * x0v + s1 * z;
          const MeanVar mv = p_mean_variance(i, xt, eps, double(model_out[vo + k]));
          double term, dterm;
          if (i != 0) {
            const double tm = coef1_[k0] * x0v + coef2_[k0] * xt, dm = tm - mv.mean;
            const double e1 = std::exp(tlv - mv.log_variance), e2 = std::exp(-mv.log_variance);
            term = 0.5 * (-1.0 + mv.log_variance - tlv + e1 + dm * dm * e2);
            dterm = 0.5 * (1.0 - e1 - dm * dm * e2);
          } else {
            const T xe = x0[xo + k];
            const Nll nll = decoder_nll(x0v, xe<T(-0.999), xe> T(0.999), mv.mean, mv.log_variance);
            term = nll.value;
            dterm = nll.d_logvar;
          }
          vb += term;
          if (grad) grad[vo + k] = T(dterm * dlv_dv * gscale / kLn2);
        }
      }
    }
    r.mse[size_t(b)] = mse / per;
    double lb = r.mse[size_t(b)];
    if (learn_sigma) {
      r.vb[size_t(b)] = vb / per / kLn2;
      lb += r.vb[size_t(b)];
    }
    r.loss += lb;
  }
  r.loss /= batch;
  return r;
}

#define UVIT_ADM_INSTANTIATE(T)                                                                    \
  template void AdmDiffusion::ddpm_step<T>(int, const T*, const T*, int, const T*, T*, int, int,   \
                                           int64_t, AdmVariance) const;                            \
  template void AdmDiffusion::ddim_step<T>(int, const T*, const T*, int, T*, int, int, int64_t)    \
      const;                                                                                       \
  template void AdmDiffusion::q_sample<T>(const int*, const T*, const T*, T*, int, int64_t) const; \
  template AdmDiffusion::LossTerms AdmDiffusion::hybrid_loss<T>(                                   \
      const int*, const T*, const T*, const T*, bool, int, int, int64_t, T*,                       \
      const std::array<int, 2>*, int64_t) const;
UVIT_ADM_INSTANTIATE(float)
UVIT_ADM_INSTANTIATE(double)
#undef UVIT_ADM_INSTANTIATE

}  // namespace uvit
