// DiT's diffusion process: the ADM GaussianDiffusion + SpacedDiffusion that DiT and Skip-DiT copy
// (facebookresearch/DiT:diffusion/gaussian_diffusion.py, respace.py; docs/dit.md). Host-side and
// independent of the networks: schedules in double, per-element updates computed in double and
// stored in the element type (float for real runs, double for reference checks).
//
// Indices: an AdmDiffusion with K steps is indexed by i = 0..K-1 (its own, respaced, index). The
// network is called with the ORIGINAL step timestep_map()[i] (network_time(i)), as the official
// _WrappedModel does. Sampling runs i = K-1 down to 0.
//
// Layouts: x, noise [batch, channels, n] (n = pixels per channel); model_out [batch,
// model_channels, n] with eps in channels 0..channels-1 and, with a learned variance, v in
// channels..2·channels-1.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace uvit {

// ADM "linear" betas: numpy.linspace(s·1e-4, s·0.02, num_timesteps) in double with
// s = 1000 / num_timesteps (numpy semantics: start + i·step, the last one = end exactly).
std::vector<double> adm_linear_betas(int num_timesteps = 1000);

// respace.py space_timesteps, ascending. section: "ddimK" takes the smallest integer stride s with
// exactly K steps in range(0, num_timesteps, s); otherwise comma-separated counts, one per equal
// part (the first num_timesteps % parts parts one longer), count k of a part of size m taking start
// + round(j·(m-1)/(k-1)) with the float stride accumulated and round half to even (Python's round).
// Counts are plain non-negative integers (surrounding spaces allowed). Throws uvit::Error for a
// malformed string, a count larger than its part, no ddim stride, or no step at all.
std::vector<int> space_timesteps(int num_timesteps, const std::string& section);

// What the model's variance is (gaussian_diffusion.py ModelVarType).
enum class AdmVariance {
  LearnedRange,  // log var = frac·log(beta_i) + (1-frac)·posterior_log_variance_clipped_i, frac =
                 // (v+1)/2
  FixedLarge,    // var = [posterior_variance_1, beta_1, beta_2, ...]
  FixedSmall,    // var = posterior_variance (log: posterior_log_variance_clipped)
};

class AdmDiffusion {
 public:
  // The process with these betas (each in (0, 1], at least 2 of them), no respacing.
  explicit AdmDiffusion(std::vector<double> betas);
  // SpacedDiffusion: keeps the original steps use_timesteps (any order, duplicates ignored, each in
  // [0, base_betas.size())) with betas'_i = 1 - abar[t_i] / abar[t_{i-1}] (abar = 1 before the
  // first).
  AdmDiffusion(const std::vector<double>& base_betas, const std::vector<int>& use_timesteps);
  // DiT's create_diffusion(respacing): linear betas over diffusion_steps, respaced by
  // space_timesteps(diffusion_steps, respacing); "" keeps every step (still a SpacedDiffusion, so
  // the betas are recomputed from abar and differ from the linear ones by rounding, as in DiT's
  // training).
  static AdmDiffusion dit(const std::string& respacing = "", int diffusion_steps = 1000);

  int num_timesteps() const { return int(betas_.size()); }
  int original_num_steps() const { return original_num_steps_; }
  // timestep_map()[i]: the original step of index i (identity without respacing).
  const std::vector<int>& timestep_map() const { return timestep_map_; }
  // The network's time input for index i (the original step as a float).
  double network_time(int i) const;

  // Schedule arrays (gaussian_diffusion.py names), each of length num_timesteps().
  const std::vector<double>& betas() const { return betas_; }
  const std::vector<double>& alphas_cumprod() const { return ac_; }
  const std::vector<double>& alphas_cumprod_prev() const { return ac_prev_; }
  const std::vector<double>& alphas_cumprod_next() const { return ac_next_; }
  const std::vector<double>& sqrt_alphas_cumprod() const { return sqrt_ac_; }
  const std::vector<double>& sqrt_one_minus_alphas_cumprod() const { return sqrt_1m_ac_; }
  const std::vector<double>& log_one_minus_alphas_cumprod() const { return log_1m_ac_; }
  const std::vector<double>& sqrt_recip_alphas_cumprod() const { return sqrt_recip_ac_; }
  const std::vector<double>& sqrt_recipm1_alphas_cumprod() const { return sqrt_recipm1_ac_; }
  const std::vector<double>& posterior_variance() const { return post_var_; }
  // log of posterior_variance with entry 0 replaced by entry 1 (posterior_variance_0 = 0).
  const std::vector<double>& posterior_log_variance_clipped() const { return post_logvar_; }
  const std::vector<double>& posterior_mean_coef1() const { return coef1_; }
  const std::vector<double>& posterior_mean_coef2() const { return coef2_; }

  // ---- per element (double) ----
  // x0 = sqrt(1/abar_i)·x_t - sqrt(1/abar_i - 1)·eps (no clipping: clip_denoised=False).
  double pred_x0(int i, double x_t, double eps) const;
  // The model's log variance at index i (v is only read for LearnedRange).
  double log_variance(int i, AdmVariance var, double v = 0) const;
  struct MeanVar {
    double mean, log_variance, pred_x0;
  };
  // p_mean_variance for an eps model: mean = coef1_i·x0 + coef2_i·x_t.
  MeanVar p_mean_variance(int i, double x_t, double eps, double v = 0,
                          AdmVariance var = AdmVariance::LearnedRange) const;
  // q_sample: x_t = mean·x0 + std·noise with mean = sqrt(abar_i), std = sqrt(1 - abar_i).
  struct QCoeffs {
    double mean, std;
  };
  QCoeffs q_sample_coeffs(int i) const;

  // ---- batches (all samples at the same index i) ----
  // One DDPM step (p_sample): out = mean + [i != 0]·exp(log_var/2)·noise; noise may be null at
  // i = 0. LearnedRange needs model_channels = 2·channels; the fixed variances read only eps.
  template <class T>
  void ddpm_step(int i, const T* x, const T* model_out, int model_channels, const T* noise, T* out,
                 int batch, int channels, int64_t n,
                 AdmVariance var = AdmVariance::LearnedRange) const;
  // One DDIM step with eta = 0 (ddim_sample): out = x0·sqrt(abar_prev_i) + sqrt(1 -
  // abar_prev_i)·eps' with eps' re-derived from x0 as the official code does. Reads the eps
  // channels only.
  template <class T>
  void ddim_step(int i, const T* x, const T* model_out, int model_channels, T* out, int batch,
                 int channels, int64_t n) const;
  // x_t for per-sample indices t[b].
  template <class T>
  void q_sample(const int* t, const T* x0, const T* noise, T* x_t, int batch,
                int64_t per_sample) const;

  // ---- training (training_losses, LossType.MSE, eps prediction) ----
  struct LossTerms {
    double loss = 0;              // mean over the batch of mse + vb
    std::vector<double> mse, vb;  // per sample; vb empty without learn_sigma
  };
  // model_out is the network's output at x_t = q_sample(x0, t, noise), with 2·channels channels
  // when learn_sigma (LearnedRange) and channels otherwise. mse_b = mean over (c, n) of (noise -
  // eps)^2; vb_b = KL(q(x_{t-1}|x_t,x0) || N(mean from the DETACHED eps, learned var)) / ln 2
  // averaged over (c, n), and at t = 0 the discretized-Gaussian decoder NLL in bits instead. grad
  // (nullable, the layout of model_out) receives d loss / d model_out: eps channels the MSE term
  // only (the mean is frozen in vb), v channels the vb term.
  // With `valid` (FiT's packed batches, docs/fit.md "FiTv1"), the n elements of a channel are
  // rows of `width` and only the top-left valid[b] = {rows, columns} of sample b count: both
  // means run over its valid elements (the official mean_flat(...) · N / valid) and grad is zero
  // elsewhere. Without it a sample is one row of n: the same sums in the same order.
  template <class T>
  LossTerms hybrid_loss(const int* t, const T* x0, const T* noise, const T* model_out,
                        bool learn_sigma, int batch, int channels, int64_t n, T* grad = nullptr,
                        const std::array<int, 2>* valid = nullptr, int64_t width = 0) const;

 private:
  void init(std::vector<double> betas);
  void check_index(int i, const char* what) const;
  int original_num_steps_ = 0;
  std::vector<int> timestep_map_;
  std::vector<double> betas_, log_betas_, ac_, ac_prev_, ac_next_, sqrt_ac_, sqrt_1m_ac_,
      log_1m_ac_, sqrt_recip_ac_, sqrt_recipm1_ac_, post_var_, post_logvar_, coef1_, coef2_,
      large_logvar_;
};

}  // namespace uvit
