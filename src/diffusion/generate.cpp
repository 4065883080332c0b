#include "uvit/generate.hpp"

#include <algorithm>
#include <cmath>

#include "core/mem_limit.hpp"
#include "diffusion/sampling_plan.hpp"
#include "uvit/adm.hpp"
#include "uvit/error.hpp"
#include "uvit/flow.hpp"
#include "uvit/rng.hpp"

namespace uvit {

NoiseSchedule schedule_for(const Config& c) {
  const std::string s = c.json.value("schedule", std::string("continuous_vp"));
  if (s == "continuous_vp") return NoiseSchedule::linear_vp();
  if (s == "discrete_sd") return NoiseSchedule::discrete_sd();
  // DiT trains on the SpacedDiffusion of all 1000 steps (betas recomputed from alphabar).
  if (s == "adm") return NoiseSchedule::discrete(AdmDiffusion::dit("").betas());
  if (s == "flow") fail("config ", c.config_name, ": a flow preset has no noise schedule");
  fail("config ", c.config_name, ": schedule '", s,
       "' is not continuous_vp, discrete_sd, adm or flow");
}

bool is_adm(const Config& c) { return c.json.value("schedule", std::string()) == "adm"; }

int real_classes(const Config& c) { return c.spec.real_classes(); }

int null_class(const Config& c) { return c.spec.null_class; }

GenerateOptions with_preset_defaults(const Config& cfg, GenerateOptions opt) {
  const nlohmann::json sc = cfg.json.value("sample", nlohmann::json::object());
  if (is_flow(cfg)) {
    with_flow_defaults(cfg, opt);
  } else {
    UVIT_CHECK(opt.shift <= 0 && opt.cfg_interval < 0 && opt.atol <= 0 && opt.rtol <= 0 &&
                   opt.zero_init_steps <= 0,
               "config ", cfg.config_name,
               " is not a flow preset: the time shift, cfg interval, zero-init steps, atol and "
               "rtol apply to flow presets only");
    if (opt.sampler.empty())
      opt.sampler = sampler_for_algorithm(sc.value("algorithm", ""), schedule_for(cfg).kind());
    check_sampler_for(
        opt.sampler, schedule_for(cfg).kind(),
        cat("config ", cfg.config_name, " (schedule ", cfg.json.value("schedule", "?"), ")"));
    if (opt.steps <= 0) opt.steps = sc.value("sample_steps", default_steps(opt.sampler));
    // DDPM and DDIM pick steps among the diffusion's discrete ones: more than it has mean nothing
    // (the others take any count). Checked here so sample, serve and the C API name the steps.
    if (opt.sampler == "ddpm" || opt.sampler == "ddim") {
      const int N = schedule_for(cfg).total_n();
      UVIT_CHECK(opt.steps <= N, "steps ", opt.steps, ": the ", opt.sampler,
                 " sampler takes at most the ", N, " steps of config ", cfg.config_name,
                 "'s diffusion (the other samplers take any count)");
    }
  }
  if (opt.cfg_scale < 0) opt.cfg_scale = sc.value("cfg", false) ? sc.value("scale", 0.0) : 0.0;
  if (opt.cfg_power < 0) opt.cfg_power = sc.value("cfg_power", 0.0);
  UVIT_CHECK(std::isfinite(opt.cfg_power) && opt.cfg_power >= 0,
             "the power-cos guidance power (cfg_power) must be >= 0, got ", opt.cfg_power);
  const NetSpec& ns = cfg.spec;
  UVIT_CHECK(opt.cfg_power == 0 || ns.power_cos != NetSpec::PowerCos::None, "cfg_power: network ",
             ns.name, " has no power-cos guidance (docs/fit.md)");
  if (opt.guidance_channels <= 0)
    opt.guidance_channels = ns.guidance_channels > 0 ? ns.guidance_channels : ns.in_chans;
  // Output channels, as forward_with_cfg slices them (DiT with a learned variance on fewer than 3
  // input channels guides variance channels too).
  UVIT_CHECK(opt.guidance_channels <= ns.out_chans, "guidance channels ", opt.guidance_channels,
             " exceed the ", ns.out_chans, " output channels of config ", cfg.config_name);
  return opt;
}

namespace {
// What power_cos_scale reads at network time t: the noise fraction (MDT), or FiT's min(t, 1).
double power_cos_tau(const NetSpec& s, double t, double noise_fraction) {
  return s.power_cos == NetSpec::PowerCos::Fit ? std::min(t, 1.0) : noise_fraction;
}

}  // namespace

// The network as the samplers see it: a mini-batch of B samples at one network time, both halves
// of guidance in one batched call, the halves combined (DiT: on the first guidance_channels
// channels only, as its forward_with_cfg; the rest from the conditional pass). With a power-cos
// power the scale follows power_cos_scale of the step's time fraction tau.
class Denoiser {
 public:
  Denoiser(Network& net, int cap, bool guided, double scale, int guidance_channels, double power)
      : net_(net),
        be_(net.backend()),
        s_(net.spec()),
        guided_(guided),
        scale_(scale),
        power_(power),
        gch_(guidance_channels),
        dx_(be_, size_t(cap) * (guided ? 2 : 1) * s_.in_numel() * 4),
        dout_(be_, size_t(cap) * (guided ? 2 : 1) * s_.out_numel() * 4),
        dt_(be_, size_t(cap) * (guided ? 2 : 1) * 4),
        dy_(be_, s_.class_conditional() ? size_t(cap) * (guided ? 2 : 1) * 4 : 0),
        dctx_(be_, s_.text_conditional() ? size_t(cap) * (guided ? 2 : 1) * s_.context_numel() * 4
                                         : 0) {}

  // Labels and contexts of the mini-batch (the unconditional half gets the null ones).
  void condition(int B, const int* labels, int null_class, const float* ctx,
                 const float* null_ctx) {
    B_ = B;
    const int BB = B * (guided_ ? 2 : 1);
    if (s_.class_conditional()) {
      std::vector<int32_t> y(BB);
      for (int b = 0; b < B; ++b) {
        UVIT_CHECK(labels[b] >= 0 && labels[b] < s_.num_classes, "class ", labels[b],
                   " is outside [0, ", s_.num_classes, ")");
        y[b] = labels[b];
        if (guided_) y[B + b] = null_class;
      }
      be_.upload(dy_.as(), y.data(), y.size() * 4);
    }
    if (s_.text_conditional()) {
      const size_t L = s_.context_numel();
      be_.upload(dctx_.f32(), ctx, size_t(B) * L * 4);
      for (int b = 0; guided_ && b < B; ++b)
        be_.upload(dctx_.f32() + size_t(B + b) * L, null_ctx, L * 4);
    }
  }

  // out [B, out_chans, S, S] (host) = the guided prediction at network time tnet for x (host);
  // tau: what power_cos_scale reads (power_cos_tau: the time as a fraction of the process, 1 =
  // noise, or FiT's min(t, 1)).
  // guide false: the conditional prediction alone (the unconditional half is not run), which is
  // what the guided combination gives on a step outside a guidance interval.
  void operator()(const float* x, float tnet, double tau, float* out, bool guide = true) {
    const bool both = guided_ && guide;
    const int BB = B_ * (both ? 2 : 1);
    const size_t in = size_t(B_) * s_.in_numel(), on = size_t(B_) * s_.out_numel();
    std::vector<float> t(BB, tnet);
    be_.upload(dt_.f32(), t.data(), t.size() * 4);
    be_.upload(dx_.f32(), x, in * 4);
    if (both) be_.upload(dx_.f32() + in, x, in * 4);
    net_.forward(dx_.f32(), dt_.f32(), dy_.as<int32_t>(), dctx_.f32(), dout_.f32(), BB, false);
    if (!both) return be_.download(out, dout_.f32(), on * 4);
    host_.resize(2 * on);
    be_.download(host_.data(), dout_.f32(), host_.size() * 4);
    const size_t hw = size_t(s_.img_size) * s_.width(), per = s_.out_numel();
    const size_t g = size_t(gch_) * hw;
    const float scale = power_ > 0 ? float(scale_ * power_cos_scale(tau, power_)) : float(scale_);
    for (int b = 0; b < B_; ++b) {
      const float* c = host_.data() + b * per;
      float* o = out + b * per;
      cfg_combine(c, c + on, scale, o, g);
      std::copy(c + g, c + per, o + g);
    }
  }

 private:
  Network& net_;
  Backend& be_;
  const NetSpec& s_;
  bool guided_;
  double scale_, power_;
  int gch_;  // channels guidance combines (the rest come from the conditional pass)
  int B_ = 0;
  DeviceBuffer dx_, dout_, dt_, dy_, dctx_;
  std::vector<float> host_;
};

namespace {

// After each network evaluation: the progress callback and, every opt.preview_interval-th
// evaluation of a mini-batch and at its last, the preview of the x0 that `fill` writes (the
// sampler's own data prediction; nothing is computed without a preview).
class Evaluations {
 public:
  Evaluations(const GenerateOptions& opt, int per_batch, int total)
      : opt_(opt), per_batch_(per_batch), total_(total) {}
  // The mini-batch that the next evaluations belong to.
  void start(int first, int B, size_t numel) {
    first_ = first;
    B_ = B;
    numel_ = numel;
    batch_done_ = 0;
  }
  template <class Fill>
  void operator()(Fill&& fill) {
    ++done_;
    ++batch_done_;
    const int every = std::max(1, opt_.preview_interval);
    if (opt_.preview && (batch_done_ % every == 0 || batch_done_ == per_batch_)) {
      x0_.resize(size_t(B_) * numel_);
      fill(x0_.data());
      opt_.preview(x0_.data(), B_, first_, done_, total_);
    }
    if (opt_.progress) opt_.progress(done_, total_);
  }

 private:
  const GenerateOptions& opt_;
  int per_batch_, total_, done_ = 0, batch_done_ = 0, first_ = 0, B_ = 0;
  size_t numel_ = 0;
  std::vector<float> x0_;
};

// DiT's ADM samplers: `ddpm` = respacing "K" with the network's variance (learned, or fixed
// large), `ddim` = respacing "ddimK" with eta 0 (facebookresearch/DiT diffusion/respace.py).
// Power-cos guidance reads the original step t as tau = t / 1000, as MDT's forward_with_cfg.
std::vector<float> adm_sample(const std::string& sampler, int steps, std::vector<float> x,
                              Denoiser& model, const NetSpec& s, int B, uint64_t seed,
                              uint64_t noise_offset, Evaluations& on_eval) {
  const bool ddim = sampler == "ddim";
  const AdmDiffusion d = AdmDiffusion::dit((ddim ? "ddim" : "") + std::to_string(steps));
  const int K = d.num_timesteps();
  const int C = s.in_chans, Co = s.out_chans;
  const int64_t hw = int64_t(s.img_size) * s.width();
  const AdmVariance var = s.learned_sigma() ? AdmVariance::LearnedRange : AdmVariance::FixedLarge;
  std::vector<float> out(size_t(B) * s.out_numel()), next(x.size()), z(x.size());
  for (int i = K - 1; i >= 0; --i) {
    const double t = d.network_time(i);
    model(x.data(), float(t), power_cos_tau(s, t, t / d.original_num_steps()), out.data());
    on_eval([&](float* d0) {  // ADM's pred_xstart from the eps channels
      for (int b = 0; b < B; ++b)
        for (int64_t k = 0; k < C * hw; ++k)
          d0[b * C * hw + k] = float(d.pred_x0(i, x[b * C * hw + k], out[b * Co * hw + k]));
    });
    if (ddim) {
      d.ddim_step(i, x.data(), out.data(), Co, next.data(), B, C, hw);
    } else {
      if (i > 0)
        Philox(seed, sampler_noise_stream(uint64_t(K - 1 - i)))
            .fill_normal(z.data(), z.size(), noise_offset);
      d.ddpm_step(i, x.data(), out.data(), Co, i > 0 ? z.data() : nullptr, next.data(), B, C, hw,
                  var);
    }
    std::swap(x, next);
  }
  return x;
}

// A flow preset's sampler (docs/flow.md): the network time is the solver's t in [0, 1]; guidance
// as LightningDiT's forward_with_cfg with cfg_interval, unguided while t < t0 (the shifted t, in
// float32 as the official comparison). Power-cos guidance: tau = 1 - t (t = 1 is data), FiT's
// min(t, 1).
std::vector<float> flow_run(const GenerateOptions& opt, std::vector<float> x, Denoiser& model,
                            const NetSpec& s, int B, uint64_t noise_offset, Evaluations& on_eval) {
  const size_t numel = s.in_numel(), onumel = s.out_numel();
  std::vector<float> out(size_t(B) * onumel);
  VelocityFnT<float> velocity = [&](const std::vector<float>& xs, double t, std::vector<float>& v) {
    model(xs.data(), float(t), power_cos_tau(s, t, 1.0 - t), out.data(),
          !(float(t) < float(opt.cfg_interval)));
    for (int b = 0; b < B; ++b)  // the velocity channels of each sample
      std::copy_n(out.begin() + b * onumel, numel, v.begin() + b * numel);
    on_eval([&](float* d0) { flow_data_prediction(t, xs.data(), v.data(), d0, xs.size()); });
  };
  FlowOptions fo;
  fo.shift = opt.shift;
  fo.atol = opt.atol;
  fo.rtol = opt.rtol;
  fo.zero_steps = opt.zero_init_steps;
  fo.noise_offset = noise_offset;
  return flow_sample(opt.sampler, opt.steps, std::move(x), velocity, opt.seed, fo);
}
}  // namespace

SamplingBuffers::SamplingBuffers(Network& net, const Config& cfg, const GenerateOptions& opt,
                                 int n) {
  const int mb =
      opt.mini_batch > 0
          ? opt.mini_batch
          : cfg.json.value("sample", nlohmann::json::object()).value("mini_batch_size", 50);
  mb_ = std::max(1, std::min(mb, n));
  host_bytes_ = size_t(n) * net.spec().in_numel() * sizeof(float) + opt.host_bytes;
  made_for_ = key(opt, n);
  made_.fetch_add(1, std::memory_order_relaxed);
  const bool guided = opt.cfg_scale != 0;
  model_ = std::make_unique<Denoiser>(net, mb_, guided, opt.cfg_scale, opt.guidance_channels,
                                      opt.cfg_power);
  net.set_skip_cache(opt.skip_cache);  // (its buffer is part of the plan)
  net.reserve(mb_ * (guided ? 2 : 1), false);
}

SamplingBuffers::~SamplingBuffers() = default;

std::atomic<int64_t> SamplingBuffers::made_{0};

SamplingBuffers::Key SamplingBuffers::key(const GenerateOptions& opt, int n) {
  return {n,
          opt.mini_batch,
          opt.cfg_scale,
          opt.guidance_channels,
          opt.cfg_power,
          opt.skip_cache,
          opt.host_bytes};
}

bool SamplingBuffers::made_for(const GenerateOptions& opt, int n) const {
  return made_for_ == key(opt, n);
}

std::unique_ptr<SamplingBuffers> planned_sampling_buffers(Network& net, const Config& cfg,
                                                          const GenerateOptions& opt, int n) {
  MemPlan plan;
  auto buffers = std::make_unique<SamplingBuffers>(net, cfg, opt, n);
  plan.count_host(buffers->host_bytes());
  plan.check();
  return buffers;
}

namespace {
// generate(), with the buffers `planned` (planned_sampling_buffers), or planned here when null.
std::vector<float> generate_with(Network& net, const Config& cfg, const GenerateOptions& opt_in,
                                 int n, const std::vector<int>& labels,
                                 const std::vector<float>& contexts,
                                 const std::vector<float>& null_context, SamplingBuffers* planned) {
  const NetSpec& nc = net.spec();
  const nlohmann::json sc = cfg.json.value("sample", nlohmann::json::object());
  const bool adm = is_adm(cfg), flow = is_flow(cfg);
  const NoiseSchedule ns = flow ? NoiseSchedule::linear_vp() : schedule_for(cfg);  // flow: unused
  const GenerateOptions opt = with_preset_defaults(cfg, opt_in);
  const std::string& sampler = opt.sampler;
  const int steps = opt.steps;
  const double scale = opt.cfg_scale;
  UVIT_CHECK(std::isfinite(scale), "guidance scale must be finite, got ", scale);
  const bool cls = nc.class_conditional(), text = nc.text_conditional();
  if (cls) UVIT_CHECK(int(labels.size()) == n, "generate: ", n, " samples need ", n, " labels");
  if (scale != 0 && cls)
    UVIT_CHECK(null_class(cfg) >= 0, "config ", cfg.config_name,
               " was not trained with label dropout (dataset.cfg), so it has no null class for "
               "guidance; use --cfg-scale 0");
  if (scale != 0 && !cls && !text)
    fail("classifier-free guidance needs a conditional model; config ", cfg.config_name,
         " is unconditional (use --cfg-scale 0)");
  const size_t L = nc.context_numel();
  if (text) {
    UVIT_CHECK(contexts.size() == size_t(n) * L, "generate: contexts must be [", n, ", ",
               nc.context_tokens, ", ", nc.context_dim, "]");
    UVIT_CHECK(scale == 0 || null_context.size() == L,
               "generate: guidance needs the empty-prompt context");
  }
  const size_t numel = nc.in_numel(), onumel = nc.out_numel();
  UVIT_CHECK(opt.noise.empty() || opt.noise.size() == size_t(n) * numel,
             "generate: the initial noise must be [", n, ", ", nc.in_chans, ", ", nc.img_size, ", ",
             nc.width(), "]");
  // The mini-batch's buffers and activations, allocated untouched and checked as a whole before
  // the first step (docs/memory.md, "Refused up front").
  std::unique_ptr<SamplingBuffers> own;
  if (!planned) {
    own = planned_sampling_buffers(net, cfg, opt, n);
    planned = own.get();
  }
  // Buffers planned for other options would sample with another mini-batch or guidance.
  UVIT_CHECK(planned->made_for(opt, n),
             "generate: the sampling buffers were planned for other "
             "options (plan with the options after with_preset_defaults)");
  const int mb = planned->mini_batch();
  Denoiser& model = planned->model();
  if (opt.on_buffers_checked) opt.on_buffers_checked();
  std::vector<float> result(size_t(n) * numel);
  // dopri5's count is not known in advance: the total is then -1.
  const int per_batch = flow ? flow_evaluations(sampler, steps, opt.zero_init_steps) : steps;
  const int evals_total = per_batch < 0 ? -1 : ((n + mb - 1) / mb) * per_batch;
  Evaluations on_eval(opt, per_batch, evals_total);
  // The network time of the solvers' continuous t: the schedule's, one less for ADM's 0-based
  // steps (DPM-Solver's discrete t = (n + 1) / N). Power-cos guidance: tau = that step / N for
  // ADM (as its ddpm), the solver's t for U-ViT's schedules.
  const double time_shift = adm ? -1.0 : 0.0;

  for (int start = 0; start < n; start += mb) {
    const int B = std::min(mb, n - start);
    std::vector<float> x(size_t(B) * numel);
    const uint64_t first = (opt.first_index + uint64_t(start)) * numel;
    if (opt.noise.empty())
      Philox(opt.seed, 0).fill_normal(x.data(), x.size(), first);
    else
      std::copy_n(opt.noise.begin() + size_t(start) * numel, x.size(), x.begin());
    net.set_skip_cache(opt.skip_cache);  // an empty cache for each mini-batch's trajectory
    model.condition(B, cls ? labels.data() + start : nullptr, null_class(cfg),
                    text ? contexts.data() + size_t(start) * L : nullptr,
                    null_context.empty() ? nullptr : null_context.data());
    on_eval.start(start, B, numel);
    std::vector<float> x0;
    if (flow) {
      x0 = flow_run(opt, std::move(x), model, nc, B, first, on_eval);
    } else if (adm && (sampler == "ddpm" || sampler == "ddim")) {
      x0 = adm_sample(sampler, steps, std::move(x), model, nc, B, opt.seed, first, on_eval);
    } else {
      std::vector<float> out(size_t(B) * onumel);
      EpsFn eps_fn = [&](const std::vector<float>& xs, double t, std::vector<float>& eps) {
        const double tnet = ns.net_time(t) + time_shift;
        model(xs.data(), float(tnet), adm ? tnet / ns.total_n() : t, out.data());
        eps.resize(xs.size());
        for (int b = 0; b < B; ++b)  // the eps channels of each sample
          std::copy_n(out.begin() + b * onumel, numel, eps.begin() + b * numel);
        on_eval([&](float* d0) { data_prediction(ns, t, xs.data(), eps.data(), d0, xs.size()); });
      };
      SamplerOptions so;
      so.noise_offset = first;
      x0 = sample(sampler, ns, steps, std::move(x), eps_fn, opt.seed, so);
    }
    std::copy(x0.begin(), x0.end(), result.begin() + size_t(start) * numel);
  }
  // NaN or Inf would be written as black images with a success status.
  const auto bad =
      std::find_if(result.begin(), result.end(), [](float v) { return !std::isfinite(v); });
  UVIT_CHECK(bad == result.end(), "sampling gave non-finite values (NaN/Inf) from sample ",
             (bad - result.begin()) / ptrdiff_t(numel),
             " on: the weights hold NaN/Inf (a diverged or damaged checkpoint?) or the settings "
             "are unstable (--cfg-scale, --steps)");
  return result;
}
}  // namespace

std::vector<float> generate(Network& net, const Config& cfg, const GenerateOptions& opt, int n,
                            const std::vector<int>& labels, const std::vector<float>& contexts,
                            const std::vector<float>& null_context) {
  return generate_with(net, cfg, opt, n, labels, contexts, null_context, nullptr);
}

std::vector<float> generate(SamplingBuffers& planned, Network& net, const Config& cfg,
                            const GenerateOptions& opt, int n, const std::vector<int>& labels,
                            const std::vector<float>& contexts,
                            const std::vector<float>& null_context) {
  return generate_with(net, cfg, opt, n, labels, contexts, null_context, &planned);
}

}  // namespace uvit
