// LaVin-DiT's sampler (docs/lavin_dit.md): torchdiffeq Euler on the official time table, guidance
// with two separate passes (the unconditional one over [zero frame, query frame]).
#include <cmath>

#include "models/lavin_dit.hpp"
#include "uvit/diffusion.hpp"
#include "uvit/error.hpp"
#include "uvit/flow.hpp"
#include "uvit/lavin.hpp"

namespace uvit {

void lavin_normalize_latents(std::vector<float>& z) {
  for (float& v : z) v = float((v - kLavinLatentShift) * kLavinLatentScale);
}

void lavin_denormalize_latents(std::vector<float>& z) {
  for (float& v : z) v = float(v / kLavinLatentScale + kLavinLatentShift);
}

std::vector<double> lavin_time_table(int points) {
  // lib/transport/integrators.py, ode.__init__ (values below 0.05 are linspace(0, .05, n) rounded
  // to 4 decimals; the rest a denser-at-data schedule).
  static const std::vector<double> t20 = {0.0000, 0.0056, 0.0111, 0.0167, 0.0222, 0.0278, 0.0333,
                                          0.0389, 0.0444, 0.0500, 0.0524, 0.0730, 0.1148, 0.1777,
                                          0.2618, 0.3671, 0.4936, 0.6412, 0.8100, 1.0000};
  static const std::vector<double> t30 = {
      0.0000, 0.0036, 0.0071, 0.0107, 0.0143, 0.0179, 0.0214, 0.0250, 0.0286, 0.0321,
      0.0357, 0.0393, 0.0429, 0.0464, 0.0500, 0.0511, 0.0600, 0.0779, 0.1049, 0.1410,
      0.1862, 0.2403, 0.3036, 0.3759, 0.4573, 0.5477, 0.6472, 0.7557, 0.8733, 1.0000};
  static const std::vector<double> t40 = {
      0.0000, 0.0026, 0.0053, 0.0079, 0.0105, 0.0132, 0.0158, 0.0184, 0.0211, 0.0237,
      0.0263, 0.0289, 0.0316, 0.0342, 0.0368, 0.0395, 0.0421, 0.0447, 0.0474, 0.0500,
      0.0506, 0.0555, 0.0655, 0.0804, 0.1004, 0.1253, 0.1553, 0.1902, 0.2302, 0.2752,
      0.3251, 0.3801, 0.4401, 0.5051, 0.5750, 0.6500, 0.7300, 0.8150, 0.9050, 1.0000};
  const std::vector<double>* t = points == 20   ? &t20
                                 : points == 30 ? &t30
                                 : points == 40 ? &t40
                                                : nullptr;
  UVIT_CHECK(t, "lavin_dit sampling: --steps must be 20, 30 or 40 (the official time tables), got ",
             points);
  std::vector<double> out(t->size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = double(float((*t)[i]));
  return out;
}

std::vector<float> lavin_sample(Network& net, const std::vector<float>& frames,
                                std::vector<float> noise, int points, double cfg_scale) {
  const NetSpec& s = net.spec();
  UVIT_CHECK(s.name == "lavin_dit", "lavin_sample: network ", s.name, " is not lavin_dit");
  const size_t F = s.in_numel();
  UVIT_CHECK(noise.size() == F, "lavin_sample: noise has ", noise.size(), " values, a latent ", F);
  UVIT_CHECK(!frames.empty() && frames.size() % F == 0, "lavin_sample: the conditioning frames ",
             frames.size(), " values are not whole latents of ", F);
  UVIT_CHECK(std::isfinite(cfg_scale), "lavin_sample: cfg_scale must be finite, got ", cfg_scale);
  const int Tc = int(frames.size() / F);
  const bool guided = cfg_scale != 1.0;
  // [zero frame, query frame] (encode_cond's cond_null).
  std::vector<float> null(2 * F, 0.f);
  std::copy(frames.end() - long(F), frames.end(), null.begin() + long(F));
  Backend& be = net.backend();
  DeviceBuffer dx(be, F * 4), dt(be, 4), dout(be, F * 4), dc(be, frames.size() * 4),
      du(be, null.size() * 4);
  be.upload(dc.as(), frames.data(), frames.size() * 4);
  be.upload(du.as(), null.data(), null.size() * 4);
  std::vector<float> vu(F);
  const VelocityFnT<float> velocity = [&](const std::vector<float>& x, double t,
                                          std::vector<float>& v) {
    const float tf = float(t);
    be.upload(dx.as(), x.data(), F * 4);
    be.upload(dt.as(), &tf, 4);
    auto run = [&](int T, const DeviceBuffer& ctx, std::vector<float>& out) {
      lavin_set_frames(net, T);
      net.forward(dx.f32(), dt.f32(), nullptr, ctx.f32(), dout.f32(), 1, false);
      out.resize(F);
      be.download(out.data(), dout.f32(), F * 4);
    };
    run(Tc, dc, v);
    if (!guided) return;
    run(2, du, vu);
    // forward_with_cfg: uncond + w (cond - uncond) = cond + (w - 1)(cond - uncond).
    cfg_combine(v.data(), vu.data(), float(cfg_scale - 1.0), v.data(), F);
  };
  FlowOptions o;
  o.grid = lavin_time_table(points);
  std::vector<float> x = flow_sample<float>("euler", points, std::move(noise), velocity, 0, o);
  lavin_set_frames(net, Tc);
  return x;
}

}  // namespace uvit
