// Diffusion: noise schedules (continuous linear VP, discrete Stable-Diffusion), training-noise
// coefficients, classifier-free guidance, time grids and every sampler (SPEC sections 6-12).
//
// Samplers work on host vectors holding the whole batch flattened, and call the model through a
// callback that receives the solver's continuous time t in (0, 1]. The caller maps t to the network
// input (NoiseSchedule::net_time: 999·t continuous, 1000·t discrete) and applies guidance
// (cfg_combine). All schedule scalars are double; vector updates are computed per element in double
// and stored in the element type (float for real runs, double for reference checks).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace uvit {

enum class ScheduleKind { LinearVP, Discrete };

class NoiseSchedule {
 public:
  // Continuous linear VP: beta(t) = beta_0 + t·(beta_1 - beta_0), T = 1 (SPEC 6.2).
  static NoiseSchedule linear_vp(double beta_0 = 0.1, double beta_1 = 20.0);
  // Discrete SD schedule: betas = linspace(sqrt(start), sqrt(end), n)^2 in double (SPEC 6.3).
  static NoiseSchedule discrete_sd(int n = 1000, double linear_start = 0.00085,
                                   double linear_end = 0.012);
  // Discrete schedule from DDPM betas beta_0..beta_{N-1} (0-based, each in (0, 1)).
  static NoiseSchedule discrete(std::vector<double> betas);
  // "linear" (or "linear_vp", "continuous") / "discrete" (or "discrete_sd"): the official defaults.
  static NoiseSchedule by_name(const std::string& name);

  ScheduleKind kind() const { return kind_; }
  const char* name() const { return kind_ == ScheduleKind::LinearVP ? "linear" : "discrete"; }
  // N: number of discrete steps (1000 for the linear schedule, as official DPM-Solver's total_N).
  int total_n() const { return n_; }
  double t_max() const { return 1.0; }
  // Smallest valid time: 0 (linear) or 1/N (discrete; below it the schedule is invalid, SPEC 20
  // #15).
  double t_min() const;
  // Default final time for the DPM-Solver family: 1e-4 (linear, eval.py) or 1/N (discrete).
  double default_t_end() const;
  // Network time input (SPEC 7.1): 999·t for the linear schedule, N·t (= 1000·t) for discrete.
  double net_time(double t) const;

  // DPM-Solver quantities (SPEC 6.1). Throw uvit::Error outside the valid range (non-finite t,
  // t > 1, t < 0 linear, t < 1/N discrete).
  double log_alpha(double t) const;
  double alpha(double t) const;
  double sigma(double t) const;   // sqrt(-expm1(2·log_alpha)), no cancellation
  double lambda(double t) const;  // log alpha - log sigma
  double inverse_lambda(double lam) const;
  // beta(t) of the linear SDE (Euler–Maruyama); throws for discrete schedules.
  double beta(double t) const;
  double beta_0() const { return beta_0_; }
  double beta_1() const { return beta_1_; }

  // Training-side noising x_t = mean·x0 + std·eps (SPEC 6.3 Schedule, 7.3).
  struct Coeffs {
    double mean, std;
  };
  // Linear schedule, t in [0, 1): sqrt(alphabar(t)), sqrt(1 - alphabar(t)).
  Coeffs train_coeffs(double t) const;
  // Discrete schedule, n in 1..N: sqrt(alphabar_n), sqrt(cum_betas_n) (cum_betas by the recurrence
  // c_n = c_{n-1}·(1 - beta_n) + beta_n, i.e. skip_betas[0, n] of the official Schedule).
  Coeffs train_coeffs_discrete(int n) const;
  // Discrete, 1-based: beta_n (n in 1..N) and alphabar_n (n in 0..N, alphabar_0 = 1).
  double beta_n(int n) const;
  double alphabar_n(int n) const;
  // Discrete knots: a_i = 0.5·sum_{k<=i} log(1 - beta_k) at tau_i = (i+1)/N, i = 0..N-1.
  const std::vector<double>& log_alpha_knots() const { return knot_a_; }

 private:
  NoiseSchedule() = default;
  void check_time(double t, const char* what) const;
  ScheduleKind kind_ = ScheduleKind::LinearVP;
  int n_ = 1000;
  double beta_0_ = 0.1, beta_1_ = 20.0;
  std::vector<double> betas_, alphabar_, cumbeta_, knot_t_, knot_a_;
  std::vector<double> rev_a_, rev_t_;  // knots reversed (ascending log_alpha) for inverse_lambda
};

// Network time input for the official N = 1000 schedules: 999·t (LinearVP) or 1000·t (Discrete).
double net_time(ScheduleKind kind, double t);

// Classifier-free guidance (SPEC 8): out = eps_c + scale·(eps_c - eps_u), computed in float32.
// scale is config sample.scale (0.4, 0.7, 1.0); the official-DPM-Solver weight is w = 1 + scale.
void cfg_combine(const float* eps_c, const float* eps_u, float scale, float* out, size_t n);
std::vector<float> cfg_combine(const std::vector<float>& eps_c, const std::vector<float>& eps_u,
                               float scale);
// MDT's power-cos guidance schedule (docs/mdt_diffusion.md): the factor (1 - cos((1 - tau)^power
// pi)) / 2 in [0, 1] that multiplies the guidance scale s (cfg_t - 1 = (cfg - 1) this), with tau
// in [0, 1] the sampling time as a fraction of the process (1 = pure noise; ADM: t / 1000 with t
// the original step). power 0 gives 1 (constant guidance).
double power_cos_scale(double tau, double power);

// ---- time grids (SPEC 9.1), descending from t_T to t_0, n intervals, n + 1 points ----
// torch.linspace semantics: the first half start + i·step, the second half end - (n-1-i)·step.
std::vector<double> linspace(double start, double end, int count);
std::vector<double> time_uniform_grid(double t_T, double t_0, int n);
// Uniform in lambda, mapped back with inverse_lambda. The endpoints are t_T and t_0 exactly.
std::vector<double> logsnr_grid(const NoiseSchedule& ns, double t_T, double t_0, int n);
enum class GridKind { TimeUniform, LogSNR };
std::vector<double> make_grid(GridKind kind, const NoiseSchedule& ns, double t_T, double t_0,
                              int n);
// "time_uniform" / "logSNR" (case-insensitive, also "logsnr").
GridKind grid_kind_from_name(const std::string& name);

// "DPM-Solver-fast" order list (SPEC 9.2): order 3 gives K = steps/3 + 1 steps, e.g. [3]·16 + [2]
// for 50; order 2 gives [2]·(steps/2) (+ [1] if odd); order 1 gives [1]·steps. Sums to steps.
std::vector<int> singlestep_orders(int steps, int order);

// ---- model callback ----
template <class T>
using EpsFnT = std::function<void(const std::vector<T>& x, double t_cont, std::vector<T>& eps)>;
using EpsFn = EpsFnT<float>;
using EpsFn64 = EpsFnT<double>;

// The data prediction of a noise prediction at solver time t: x0 = (x - sigma_t·eps) / alpha_t
// per element, in double, stored in T (out may be eps). DPM-Solver++'s D and the live preview's
// x0 (docs/samplers.md "Preview").
template <class T>
void data_prediction(const NoiseSchedule& ns, double t, const T* x, const T* eps, T* out,
                     size_t n) {
  const double a = ns.alpha(t), s = ns.sigma(t);
  for (size_t i = 0; i < n; ++i) out[i] = T((double(x[i]) - s * double(eps[i])) / a);
}

// Philox stream of sampler noise for the k-th noisy step (0-based, execution order). Streams below
// 2^32 are left to callers (e.g. the initial noise x_T).
inline uint64_t sampler_noise_stream(uint64_t k) { return (uint64_t(1) << 32) + k; }

// ---- generic DPM-Solver (SPEC 9.2-9.4); the named samplers below are presets of it ----
struct DpmConfig {
  bool data_prediction = false;  // false: noise form (DPM-Solver); true: data form (DPM-Solver++)
  bool multistep = false;        // singlestep "fast" order list, or official multistep
  int order = 3;                 // 1, 2 or 3
  GridKind skip = GridKind::LogSNR;
  // Singlestep only. true: the outer points are a K-interval grid and r are the defaults (1/3, 2/3;
  // 1/2) (U-ViT old "fast", official logSNR). false: the outer points are taken from the full
  // steps-interval grid and r come from its lambdas (U-ViT pp "fast", official time_uniform).
  bool outer_grid = true;
  bool taylor = false;            // solver_type 'taylor' instead of 'dpmsolver'
  bool lower_order_final = true;  // multistep, official: only applies when steps < 10
};
template <class T>
std::vector<T> dpm_solver_sample(const NoiseSchedule& ns, const DpmConfig& cfg, int steps,
                                 double t_start, double t_end, std::vector<T> x,
                                 const EpsFnT<T>& eps_fn, int* nfe = nullptr);

// One Euler–Maruyama step from t down to s (SPEC 10), evaluated at the upper time t:
// x_s = x_coef·x + eps_coef·eps(x, t) + noise_std·z (noise_std = 0 for the ODE and when s == 0).
struct EulerCoeffs {
  double x_coef, eps_coef, noise_std;
};
EulerCoeffs euler_maruyama_coeffs(const NoiseSchedule& ns, double s, double t, bool ode);
// Its grid: [0] + linspace(eps, 1, steps) (steps + 1 points, ascending).
std::vector<double> euler_maruyama_grid(double eps, int steps);

// DDIM/DDPM index sequence (SPEC 11.2): skip = N/steps, 0, skip, ..., (steps-1)·skip (ascending).
// Index i is evaluated at t = (i+1)/N, i.e. network label n = i+1.
std::vector<int> ddim_index_sequence(int total_n, int steps);

// ---- named samplers ----
struct SamplerOptions {
  double t_start = 0;  // 0: T = 1
  // 0: the sampler default: DPM family schedule.default_t_end() (1e-4 linear, 1/N discrete);
  // Euler–Maruyama eps = 1e-3. Not used by ddpm/ddim (their grid is the index sequence).
  double t_end = 0;
  int order = 0;        // DPM family: 0 = preset default (3 singlestep, 2 for ++2m)
  std::string skip;     // DPM family: "" = preset default, "time_uniform" or "logSNR"
  bool taylor = false;  // DPM family: solver_type 'taylor'
  double eta = 0.0;     // ddim: 0 deterministic, 1 = DDPM-like (beta_tilde)
  bool ddpm_small_variance =
      false;             // ddpm: beta_tilde ("fixedsmall") instead of beta ("fixedlarge")
  bool clip_x0 = false;  // ddpm/ddim: clamp x0_hat to [-1, 1] (pixel space only)
  // Added to the element index of every noise draw, so a batch split into chunks draws the same
  // noise as the whole batch (pass the chunk's first flattened element).
  uint64_t noise_offset = 0;
  std::function<void(int step, int total)> progress;  // after each solver step
};

// "euler-maruyama", "euler-ode", "dpm-solver", "dpm-solver++", "dpm-solver++2m", "ddpm", "ddim".
std::vector<std::string> sampler_names();
// Throws uvit::Error listing the valid names.
void check_sampler_name(const std::string& name);
// The same, and refuses euler-maruyama / euler-ode for a schedule other than the continuous VP one,
// naming `what` (the config) and the samplers it takes; said up front, as the solver's own error
// names neither (docs/samplers.md).
void check_sampler_for(const std::string& name, ScheduleKind kind, const std::string& what);
// Default number of steps: 1000 for euler-maruyama/euler-ode/ddpm, 50 otherwise.
int default_steps(const std::string& name);
// The official sampler for a config's sample.algorithm ("euler_maruyama_sde", "euler_maruyama_ode",
// "dpm_solver" or ""): dpm_solver means "dpm-solver" (linear) or "dpm-solver++" (discrete).
std::string sampler_for_algorithm(const std::string& algorithm, ScheduleKind kind);

// Runs the named sampler from x_T (the whole batch flattened) and returns x_0. steps <= 0 means
// default_steps(name). seed keys the Philox noise of stochastic samplers.
std::vector<float> sample(const std::string& name, const NoiseSchedule& ns, int steps,
                          std::vector<float> x_T, const EpsFn& eps_fn, uint64_t seed,
                          const SamplerOptions& options = {});
std::vector<double> sample(const std::string& name, const NoiseSchedule& ns, int steps,
                           std::vector<double> x_T, const EpsFn64& eps_fn, uint64_t seed,
                           const SamplerOptions& options = {});

}  // namespace uvit
