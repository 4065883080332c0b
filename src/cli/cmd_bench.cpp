// `uvit bench`: times the network's forward pass or a full training step (forward, backward,
// AdamW) on random data; prints one JSON line. Run one mode per process for peak-memory figures.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "cli/commands.hpp"
#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/model.hpp"
#include "uvit/rng.hpp"

namespace uvit::cli {

void add_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Time the forward pass or a training step");
  struct Opts {
    std::string config, mode = "forward", device = "cpu";
    int batch = 8, iters = 5, warmup = 1;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--config,-c", o->config, "preset name or JSON file")->required();
  cmd->add_option("--batch,-b", o->batch, "batch size")->check(CLI::PositiveNumber);
  cmd->add_option("--mode", o->mode, "forward or train")
      ->check(CLI::IsMember({"forward", "train"}));
  cmd->add_option("--iters", o->iters, "timed iterations")->check(CLI::PositiveNumber);
  cmd->add_option("--warmup", o->warmup, "untimed iterations")->check(CLI::NonNegativeNumber);
  cmd->add_option("--device", o->device, "cpu or cuda");
  cmd->callback([o] {
    Config c = load_config(o->config);
    const NetConfig& n = c.net;
    auto be = make_backend(o->device);
    UViT net(n, *be);
    net.init_random(1);
    const int B = o->batch;
    const size_t img = size_t(n.in_chans) * n.img_size * n.img_size;
    Philox rng(7);
    std::vector<float> x(B * img), target(B * img), t(B), ctx;
    rng.fill_normal(x.data(), x.size());
    rng.fill_normal(target.data(), target.size(), x.size());
    for (int b = 0; b < B; ++b) t[b] = 999.f * rng.uniform(10 * x.size() + b);
    std::vector<int32_t> y;
    if (n.t2i()) {
      ctx.resize(size_t(B) * n.num_clip_token * n.clip_dim);
      rng.fill_normal(ctx.data(), ctx.size(), 3 * x.size());
    } else if (n.num_classes > 0) {
      for (int b = 0; b < B; ++b) y.push_back(b % n.num_classes);
    }
    auto up = [&](const void* src, size_t bytes) {
      void* p = be->alloc_bytes(std::max<size_t>(bytes, 4));
      if (bytes) be->upload(p, src, bytes);
      return p;
    };
    auto* dx = static_cast<float*>(up(x.data(), x.size() * 4));
    auto* dtarget = static_cast<float*>(up(target.data(), target.size() * 4));
    auto* dt = static_cast<float*>(up(t.data(), t.size() * 4));
    auto* dy = y.empty() ? nullptr : static_cast<int32_t*>(up(y.data(), y.size() * 4));
    auto* dctx = ctx.empty() ? nullptr : static_cast<float*>(up(ctx.data(), ctx.size() * 4));
    float* out = be->alloc(x.size());
    const bool train = o->mode == "train";
    float *m = nullptr, *v = nullptr;
    if (train) {
      m = be->alloc(net.num_params());
      v = be->alloc(net.num_params());
      be->fill(m, 0.f, net.num_params());
      be->fill(v, 0.f, net.num_params());
    }
    long step = 0;
    auto once = [&] {
      if (!train) {
        net.forward(dx, dt, dy, dctx, out, B, false);
        return;
      }
      net.zero_grad();
      net.forward(dx, dt, dy, dctx, out, B, true);
      // d(mean squared error)/d(out) = 2 (out - target) / numel
      be->axpy(out, dtarget, -1.f, x.size());
      be->scale(out, 2.f / float(x.size()), x.size());
      net.backward(out);
      be->adamw(net.params(), net.grads(), m, v, net.num_params(), 2e-4f, 0.99f, 0.999f, 1e-8f,
                0.03f, ++step);
    };
    for (int i = 0; i < o->warmup; ++i) once();
    std::vector<double> secs;
    for (int i = 0; i < o->iters; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      once();
      secs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(secs.begin(), secs.end());
    const double med = secs[secs.size() / 2];
    const double flops = forward_flops(n) * (train ? 3 : 1) * B;
    struct rusage ru {};
    getrusage(RUSAGE_SELF, &ru);
    std::printf(
        "{\"impl\": \"uvit\", \"config\": \"%s\", \"mode\": \"%s\", \"batch\": %d, \"median_s\": "
        "%.5f, "
        "\"img_s\": %.3f, \"gflop_s\": %.1f, \"peak_rss_mb\": %.1f}\n",
        c.config_name.c_str(), o->mode.c_str(), B, med, B / med, flops / med / 1e9,
        ru.ru_maxrss / 1024.0);
  });
}

}  // namespace uvit::cli
