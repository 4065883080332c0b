#include "uvit/generate.hpp"

#include <algorithm>
#include <cmath>

#include "uvit/error.hpp"
#include "uvit/rng.hpp"

namespace uvit {

NoiseSchedule schedule_for(const Config& c) {
  const std::string s = c.json.value("schedule", std::string("continuous_vp"));
  if (s == "continuous_vp") return NoiseSchedule::linear_vp();
  if (s == "discrete_sd") return NoiseSchedule::discrete_sd();
  fail("config ", c.config_name, ": schedule '", s, "' is not continuous_vp or discrete_sd");
}

static bool dataset_cfg(const Config& c) {
  return c.json.contains("dataset") && c.json["dataset"].value("cfg", false);
}

int real_classes(const Config& c) {
  if (c.net.t2i() || c.net.num_classes <= 0) return 0;
  return dataset_cfg(c) ? c.net.num_classes - 1 : c.net.num_classes;
}

int null_class(const Config& c) {
  if (c.net.t2i() || c.net.num_classes <= 0 || !dataset_cfg(c)) return -1;
  return c.net.num_classes - 1;
}

GenerateOptions with_preset_defaults(const Config& cfg, GenerateOptions opt) {
  const nlohmann::json sc = cfg.json.value("sample", nlohmann::json::object());
  if (opt.sampler.empty())
    opt.sampler = sampler_for_algorithm(sc.value("algorithm", ""), schedule_for(cfg).kind());
  check_sampler_name(opt.sampler);
  if (opt.steps <= 0) opt.steps = sc.value("sample_steps", default_steps(opt.sampler));
  if (opt.cfg_scale < 0) opt.cfg_scale = sc.value("cfg", false) ? sc.value("scale", 0.0) : 0.0;
  return opt;
}

std::vector<float> generate(UViT& net, const Config& cfg, const GenerateOptions& opt_in, int n,
                            const std::vector<int>& labels, const std::vector<float>& contexts,
                            const std::vector<float>& null_context) {
  const NetConfig& nc = net.config();
  const nlohmann::json sc = cfg.json.value("sample", nlohmann::json::object());
  const NoiseSchedule ns = schedule_for(cfg);
  const GenerateOptions opt = with_preset_defaults(cfg, opt_in);
  const std::string& sampler = opt.sampler;
  const int steps = opt.steps;
  const double scale = opt.cfg_scale;
  const bool cls = !nc.t2i() && nc.num_classes > 0;
  if (cls) UVIT_CHECK(int(labels.size()) == n, "generate: ", n, " samples need ", n, " labels");
  if (scale != 0 && cls)
    UVIT_CHECK(null_class(cfg) >= 0, "config ", cfg.config_name,
               " was not trained with label dropout (dataset.cfg), so it has no null class for "
               "guidance; use --cfg-scale 0");
  if (scale != 0 && !cls && !nc.t2i())
    fail("classifier-free guidance needs a conditional model; config ", cfg.config_name,
         " is unconditional (use --cfg-scale 0)");
  const size_t L = size_t(nc.num_clip_token) * nc.clip_dim;
  if (nc.t2i()) {
    UVIT_CHECK(contexts.size() == size_t(n) * L, "generate: contexts must be [", n, ", ",
               nc.num_clip_token, ", ", nc.clip_dim, "]");
    UVIT_CHECK(scale == 0 || null_context.size() == L,
               "generate: guidance needs the empty-prompt context");
  }
  const size_t numel = size_t(nc.in_chans) * nc.img_size * nc.img_size;
  int mb = opt.mini_batch > 0 ? opt.mini_batch : sc.value("mini_batch_size", 50);
  mb = std::max(1, std::min(mb, n));
  const int guided = scale != 0 ? 2 : 1;  // cond and uncond halves in one batched call

  Backend& be = net.backend();
  const int cap = mb * guided;
  float* dx = be.alloc(size_t(cap) * numel);
  float* dout = be.alloc(size_t(cap) * numel);
  float* dt = be.alloc(cap);
  auto* dy = cls ? static_cast<int32_t*>(be.alloc_bytes(sizeof(int32_t) * cap)) : nullptr;
  float* dctx = nc.t2i() ? be.alloc(size_t(cap) * L) : nullptr;
  std::vector<float> result(size_t(n) * numel);
  int evals_done = 0;
  const int evals_total = ((n + mb - 1) / mb) * steps;

  for (int start = 0; start < n; start += mb) {
    const int B = std::min(mb, n - start);
    const int BB = B * guided;
    std::vector<float> x(size_t(B) * numel);
    const uint64_t first = (opt.first_index + uint64_t(start)) * numel;
    Philox(opt.seed, 0).fill_normal(x.data(), x.size(), first);
    if (cls) {
      std::vector<int32_t> y(BB);
      for (int b = 0; b < B; ++b) {
        UVIT_CHECK(labels[start + b] >= 0 && labels[start + b] < nc.num_classes, "class ",
                   labels[start + b], " is outside [0, ", nc.num_classes, ")");
        y[b] = labels[start + b];
        if (guided == 2) y[B + b] = null_class(cfg);
      }
      be.upload(dy, y.data(), y.size() * 4);
    }
    if (nc.t2i()) {
      be.upload(dctx, contexts.data() + size_t(start) * L, size_t(B) * L * 4);
      for (int b = 0; guided == 2 && b < B; ++b)
        be.upload(dctx + size_t(B + b) * L, null_context.data(), L * 4);
    }
    std::vector<float> out(size_t(BB) * numel), tnet(BB);
    EpsFn eps_fn = [&](const std::vector<float>& xs, double t, std::vector<float>& eps) {
      std::fill(tnet.begin(), tnet.end(), float(ns.net_time(t)));
      be.upload(dt, tnet.data(), tnet.size() * 4);
      be.upload(dx, xs.data(), xs.size() * 4);
      if (guided == 2) be.upload(dx + xs.size(), xs.data(), xs.size() * 4);
      net.forward(dx, dt, dy, dctx, dout, BB, false);
      be.download(out.data(), dout, out.size() * 4);
      eps.resize(xs.size());
      if (guided == 2)
        cfg_combine(out.data(), out.data() + xs.size(), float(scale), eps.data(), xs.size());
      else
        std::copy(out.begin(), out.begin() + xs.size(), eps.begin());
      ++evals_done;
      if (opt.progress) opt.progress(evals_done, evals_total);
    };
    SamplerOptions so;
    so.noise_offset = first;
    std::vector<float> x0 = sample(sampler, ns, steps, std::move(x), eps_fn, opt.seed, so);
    std::copy(x0.begin(), x0.end(), result.begin() + size_t(start) * numel);
  }
  for (void* p : {static_cast<void*>(dx), static_cast<void*>(dout), static_cast<void*>(dt),
                  static_cast<void*>(dy), static_cast<void*>(dctx)})
    if (p) be.free_bytes(p);
  // NaN or Inf would be written as black images with a success status.
  const auto bad =
      std::find_if(result.begin(), result.end(), [](float v) { return !std::isfinite(v); });
  UVIT_CHECK(bad == result.end(), "sampling gave non-finite values (NaN/Inf) from sample ",
             (bad - result.begin()) / ptrdiff_t(numel),
             " on: the weights hold NaN/Inf (a diverged or damaged checkpoint?) or the settings "
             "are unstable (--cfg-scale, --steps)");
  return result;
}

}  // namespace uvit
