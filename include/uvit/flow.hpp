// Flow matching (SiT / LightningDiT transport, docs/flow.md): the linear path x_t = t·x1 + (1-t)·x0
// from noise (t = 0) to data (t = 1), a velocity-predicting network, its training objective and
// the ODE/SDE samplers that integrate t from 0 to 1 (torchdiffeq's euler, heun2 and dopri5, SiT's
// Euler–Maruyama).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "uvit/config.hpp"
#include "uvit/objective.hpp"

namespace uvit {

struct GenerateOptions;

// A preset is a flow model when "schedule" is "flow".
bool is_flow(const Config& c);

// The preset's "transport" section (defaults: uniform time, no cosine loss, as SiT).
struct Transport {
  bool logit_normal = false;  // t = sigmoid(N(0, 1)) instead of U[0, 1)
  bool cos_loss = false;      // + mean_flat(1 - cos_sim(v, u, dim=1)) (LightningDiT)
  double train_shift = 1;     // the drawn t becomes shift_time(t, train_shift) (SVG: 0.4)
};
Transport transport_of(const Config& c);

// The inverse of the standard normal CDF (probit), |error| < 1e-15 relative; -inf at 0.
double inverse_normal_cdf(double p);

// The training objective of a flow preset: velocity MSE (+ cosine term), docs/flow.md.
// Refuses a network with a variance output (learn_sigma true).
std::unique_ptr<Objective> make_flow_objective(const Config& cfg);

// ---- samplers ----
// "euler", "heun", "euler_maruyama", "dopri5".
std::vector<std::string> flow_sampler_names();
void check_flow_sampler_name(const std::string& name);  // one line listing the valid names

// The official time shift t' = s·t / (1 + (s - 1)·t); s = 1 is the identity.
double shift_time(double t, double shift);
// linspace(0, 1, K) mapped by the shift (K >= 2 points, K - 1 steps).
std::vector<double> flow_time_grid(int K, double shift);
// SiT's sample_sde grid: linspace(0, 1 - last_step_size, K) (last step size 0.04).
std::vector<double> flow_sde_grid(int K);
constexpr double kSdeLastStep = 0.04;

// Fills a flow preset's sampling defaults into `opt` (sampler "euler", 250 steps, shift 1, cfg
// interval 0, atol 1e-6, rtol 1e-3, or the preset's sample section) and checks them.
void with_flow_defaults(const Config& cfg, GenerateOptions& opt);

// Refuses zero-init steps outside euler / heun or that leave no step (one line).
void check_zero_steps(const std::string& name, int K, int zero_steps);
// Network evaluations of a fixed-grid run with K points whose first `zero_steps` steps are skipped
// (dopri5: -1, not known in advance).
int flow_evaluations(const std::string& name, int K, int zero_steps = 0);

// The data a velocity points to on the linear path: x1 = x_t + (1 - t)·v per element, in double,
// stored in T (the live preview's x0, docs/samplers.md "Preview").
template <class T>
void flow_data_prediction(double t, const T* x, const T* v, T* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = T(double(x[i]) + (1 - t) * double(v[i]));
}

template <class T>
using VelocityFnT = std::function<void(const std::vector<T>& x, double t, std::vector<T>& v)>;

struct FlowOptions {
  double shift = 1.0;
  double atol = 1e-6, rtol = 1e-3;  // dopri5 (SiT's and LightningDiT's defaults)
  uint64_t noise_offset = 0;        // euler_maruyama: as SamplerOptions::noise_offset
  int max_steps = 100000;           // dopri5: accepted + rejected steps before giving up
  // euler / heun: the first N steps have velocity 0 (SVG's cfg_star-N-0, CFG-Zero*'s zero-init),
  // so x is unchanged until grid point N and the run starts there (no network call).
  int zero_steps = 0;
  // euler, heun: this time grid (K points, 0 to 1; LaVin-DiT's hard-coded tables) instead of
  // the shifted linspace; empty: linspace.
  std::vector<double> grid;
};

// What a run did (dopri5: its step-size control, for tests and the progress display).
struct FlowStats {
  int nfe = 0, accepted = 0, rejected = 0;
  std::vector<double> step_ends;  // dopri5: t1 of every accepted step
};

// Integrates x from t = 0 (noise) to t = 1 with K grid points and returns x(1).
template <class T>
std::vector<T> flow_sample(const std::string& name, int K, std::vector<T> x,
                           const VelocityFnT<T>& v, uint64_t seed, const FlowOptions& o,
                           FlowStats* stats = nullptr);

}  // namespace uvit
