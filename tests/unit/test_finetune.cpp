// Fine-tuning in the trainer (docs/cli.md "Fine-tuning"): train.init_weights starts the network
// and its EMA from an official-layout .pth (the twin fixtures of tests/reference), exactly as a run
// whose weights were set by hand; train.ignore_keys keeps the seed's values for the parameters it
// names; train.finetune partial updates only those, with the clipping norm over them alone,
// checked step by step against AdamW applied by hand to the gradient of a full run.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "error_of.hpp"
#include "net_inputs.hpp"
#include "temp_dir.hpp"
#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/data.hpp"
#include "uvit/io.hpp"
#include "uvit/network.hpp"
#include "uvit/rng.hpp"
#include "uvit/train.hpp"

namespace uvit {
namespace {

const std::string kFx = UVIT_TEST_FIXTURES;

// Deterministic random items of any shape: enough for the trainer's plumbing.
class NoiseItems : public Dataset {
 public:
  NoiseItems(const NetSpec& n, int classes)
      : shape_{n.in_chans, n.img_size, n.width()}, classes_(classes) {}
  int64_t size() const override { return 32; }
  std::array<int64_t, 3> item_shape() const override { return shape_; }
  int num_classes() const override { return classes_; }
  int64_t get(int64_t i, float* x, float*, const DrawRng&) const override {
    const size_t n = size_t(shape_[0] * shape_[1] * shape_[2]);
    Philox(77, uint64_t(i)).fill_normal(x, n);
    for (size_t k = 0; k < n; ++k) x[k] = std::tanh(x[k]);
    return classes_ > 0 ? i % classes_ : 0;
  }
  std::string describe() const override { return "noise items"; }

 private:
  std::array<int64_t, 3> shape_;
  int classes_;
};

// A fixture network (CASE.json, constructor arguments only) with a short training setup.
Config training(const std::string& c) {
  Config cfg = load_config(kFx + "/" + c + ".json");
  cfg.json["train"] = {{"batch_size", 4},       {"n_steps", 100},        {"log_interval", 1000},
                       {"eval_interval", 1000}, {"save_interval", 1000}, {"keep_snapshots", 100}};
  cfg.json["optimizer"] = {{"name", "adamw"}, {"lr", 1e-3}, {"weight_decay", 0.03}};
  cfg.json["lr_scheduler"] = {{"name", "customized"}, {"warmup_steps", 0}};
  cfg.json["dataset"] = {{"cfg", true}, {"p_uncond", 0.1}};
  cfg.json["seed"] = 5;
  // A learned variance trains with DiT's process (eps-MSE + VLB, docs/dit.md).
  if (cfg.spec.out_chans != cfg.spec.in_chans) cfg.json["schedule"] = "adm";
  return cfg;
}

std::shared_ptr<Dataset> data_for(const Config& c) {
  return std::make_shared<NoiseItems>(c.spec, std::min(c.spec.real_classes(), 5));
}

std::vector<float> host(Backend& be, const float* p, size_t n) {
  std::vector<float> v(n);
  be.download(v.data(), p, n * 4);
  return v;
}

std::vector<float> values(Network& n) { return host(n.backend(), n.params(), n.num_params()); }

// The weights of a file as this network lays them out.
std::vector<float> file_values(const Config& c, Backend& be, const std::string& path) {
  auto n = make_network(c, be);
  n->load_file(path);
  return values(*n);
}

std::vector<float> slice(const std::vector<float>& v, const ParamEntry& e) {
  return {v.begin() + long(e.offset), v.begin() + long(e.offset + e.numel)};
}

bool named(const std::vector<std::string>& keys, const std::string& name) {
  for (const auto& k : keys)
    if (name.find(k) != std::string::npos) return true;
  return false;
}

// Every class-conditional family: U-ViT, DiT, Skip-DiT, LightningDiT, MDTv2, FiTv2, FiTv1.
const char* kCases[] = {"cond_p2", "dit_p2", "skipdit_p2", "ldit_p1",
                        "mdt_p2",  "fit_p2", "fitv1_p2"};

TEST(Finetune, InitFromOfficialPthEqualsWeightsSetByHand) {
  auto be = make_backend("cpu", "fp32");
  for (const char* c : kCases) {
    SCOPED_TRACE(c);
    const std::string pth = kFx + "/" + c + ".pth";
    Config cfg = training(c);
    const Config plain = cfg;
    cfg.json["train"]["init_weights"] = pth;
    auto data = data_for(cfg);
    uvit_test::TempDir a, b;
    Trainer x(cfg, *be, data, a.dir.string());
    x.init();
    const std::vector<float> w = file_values(cfg, *be, pth);
    ASSERT_EQ(values(x.net()), w);
    ASSERT_EQ(values(x.ema_net()), w);
    // By hand: the seed's initialisation, then the file into the network and its EMA.
    Trainer y(plain, *be, data, b.dir.string());
    y.init();
    ASSERT_NE(values(y.net()), w);
    y.net().load_file(pth);
    y.ema_net().load_file(pth);
    for (int k = 0; k < 2; ++k) {
      const StepStats sx = x.step(), sy = y.step();
      EXPECT_EQ(sx.loss, sy.loss);
      EXPECT_EQ(sx.grad_norm, sy.grad_norm);
      EXPECT_TRUE(std::isfinite(sx.loss));
    }
    EXPECT_EQ(values(x.net()), values(y.net()));
    EXPECT_EQ(values(x.ema_net()), values(y.ema_net()));
    EXPECT_NE(values(x.net()), w);
  }
}

// FiT's HR fine-tune set (config_fitv2_hr_xl.yaml). It re-initialises the adaLN modulations and
// the final layer to zero, so the frozen weights get no gradient in the first steps; the partial
// test below uses a set that leaves them one.
const std::vector<std::string> kHr = {"x_embedder", "bias", "LN", "final_layer"};
const std::vector<std::string> kIgnore = {"blocks.1.mlp", "x_embedder", "t_embedder"};

Config fit_partial(const std::string& init, double clip,
                   const std::vector<std::string>& keys = kIgnore) {
  Config cfg = training("fit_p2");
  cfg.json["train"]["init_weights"] = init;
  cfg.json["train"]["ignore_keys"] = keys;
  cfg.json["train"]["finetune"] = "partial";
  cfg.json["grad_clip"] = clip;
  return cfg;
}

TEST(Finetune, IgnoreKeysKeepTheSeedsInitialisation) {
  auto be = make_backend("cpu", "fp32");
  const std::string pth = kFx + "/fit_p2.pth";
  Config cfg = fit_partial(pth, 0, kHr);
  uvit_test::TempDir a, b;
  Trainer x(cfg, *be, data_for(cfg), a.dir.string());
  x.init();
  Config seed_only = training("fit_p2");
  Trainer r(seed_only, *be, data_for(cfg), b.dir.string());
  r.init();
  const std::vector<float> got = values(x.net()), fresh = values(r.net()),
                           w = file_values(cfg, *be, pth);
  EXPECT_EQ(values(x.ema_net()), got);
  int kept = 0, loaded = 0;
  for (const ParamEntry& e : x.net().table().entries()) {
    SCOPED_TRACE(e.name);
    const bool ign = named(kHr, e.name);
    EXPECT_EQ(slice(got, e), ign ? slice(fresh, e) : slice(w, e));
    // The fixture's values differ from the seed's wherever the seed's are not zero.
    if (ign && slice(fresh, e) != slice(w, e)) ++kept;
    if (!ign && slice(fresh, e) != slice(w, e)) ++loaded;
  }
  EXPECT_GT(kept, 2);  // x_embedder.proj.weight, the adaLN LoRA's first layers
  EXPECT_GT(loaded, 8);
}

// After a step the EMA is ema(previous EMA, the stepped parameters) over every parameter, bit for
// bit: the trainer runs it inside AdamW's pass over the trained ranges (Backend::adamw_ema) and
// alone over the frozen ones (a partial fine-tune; DiT's fixed position embedding), whose EMA
// moves only where it differs from the parameters, so it starts from other values here.
TEST(Finetune, EmaCoversEveryParameterBitForBit) {
  auto be = make_backend("cpu", "fp32");
  const std::pair<const char*, Config> cases[] = {
      {"fit_p2 partial", fit_partial(kFx + "/fit_p2.pth", 0.05)},
      {"fit_p2", training("fit_p2")},
      {"dit_p2", training("dit_p2")}};
  for (auto [name, cfg] : cases) {
    SCOPED_TRACE(name);
    cfg.json["ema_rate"] = 0.75;
    uvit_test::TempDir a;
    Trainer x(cfg, *be, data_for(cfg), a.dir.string());
    x.init();
    std::vector<float> e = values(x.net());
    for (size_t i = 0; i < e.size(); ++i) e[i] += 0.01f * float(int(i % 7) - 3);
    be->upload(x.ema_net().params(), e.data(), e.size() * 4);
    for (int k = 0; k < 2; ++k) {
      x.step();
      const std::vector<float> p = values(x.net());
      be->ema(e.data(), p.data(), e.size(), 0.75f);
      ASSERT_EQ(values(x.ema_net()), e);
    }
  }
}

// The partial run saves a snapshot at every step; from each, a full run without clipping (the
// same data and noise) gives the step's gradient. AdamW by hand over the named parameters, on
// that gradient with the frozen ones zeroed and clipped by the norm of the rest, must give the
// partial run's next snapshot bit for bit; the frozen parameters stay the file's.
TEST(Finetune, PartialTrainsTheNamedParametersWithTheirOwnClipNorm) {
  auto be = make_backend("cpu", "fp32");
  const std::string pth = kFx + "/fit_p2.pth";
  const double clip = 0.05;
  Config cfg = fit_partial(pth, clip);
  auto data = data_for(cfg);
  uvit_test::TempDir a;
  Trainer x(cfg, *be, data, a.dir.string());
  x.init();
  const int N = 3;
  std::vector<StepStats> st;
  x.save(true);
  for (int k = 0; k < N; ++k) {
    st.push_back(x.step());
    x.save(true);
  }
  const TrainSettings& s = x.settings();
  const ParamTable& t = x.net().table();
  const size_t P = x.net().num_params();
  const std::vector<float> w = file_values(cfg, *be, pth);
  const std::vector<float> end = values(x.net()),
                           start = file_values(cfg, *be, a / "ckpts/0/nnet.safetensors");
  int frozen = 0, moved = 0;
  for (const ParamEntry& e : t.entries()) {
    if (named(kIgnore, e.name)) {
      moved += slice(end, e) != slice(start, e);
      continue;
    }
    EXPECT_EQ(slice(end, e), slice(w, e)) << e.name << " is frozen but changed";
    ++frozen;
  }
  EXPECT_GT(frozen, 8);
  EXPECT_GT(moved, 4);

  Config full = training("fit_p2");
  full.json["grad_clip"] = 0.0;
  for (int k = 0; k < N; ++k) {
    SCOPED_TRACE(k);
    const std::string ck = (a.dir / "ckpts" / std::to_string(k)).string();
    uvit_test::TempDir rd;
    Trainer r(full, *be, data, rd.dir.string());
    r.resume(ck);
    r.step();
    std::vector<float> g = host(*be, r.net().grads(), P);
    double sq = 0, frozen_sq = 0;  // (the frozen part: the norm must leave it out)
    for (const ParamEntry& e : t.entries()) {
      const bool trained = named(kIgnore, e.name) && !e.frozen;
      for (size_t i = e.offset; i < e.offset + e.numel; ++i) {
        (trained ? sq : frozen_sq) += double(g[i]) * g[i];
        if (!trained) g[i] = 0;
      }
    }
    EXPECT_GT(frozen_sq, 0.1 * sq);
    EXPECT_NEAR(st[size_t(k)].grad_norm, std::sqrt(sq), 1e-5 * std::sqrt(sq));
    ASSERT_GT(st[size_t(k)].grad_norm, clip);  // the clipping is active
    const float f = float(grad_clip_factor(s, st[size_t(k)].grad_norm));
    for (float& v : g) v *= f;
    std::vector<float> p = file_values(cfg, *be, ck + "/nnet.safetensors");
    NamedArrays state = load_safetensors(ck + "/train_state.safetensors");
    std::vector<float> m = state[0].second.to_f32(), v = state[1].second.to_f32();
    for (const ParamEntry& e : t.entries())
      if (named(kIgnore, e.name) && !e.frozen)
        be->adamw(p.data() + e.offset, g.data() + e.offset, m.data() + e.offset,
                  v.data() + e.offset, e.numel, float(s.lr), float(s.beta1), float(s.beta2),
                  float(s.eps), float(s.weight_decay), k + 1);
    const std::string next = (a.dir / "ckpts" / std::to_string(k + 1)).string();
    EXPECT_EQ(p, file_values(cfg, *be, next + "/nnet.safetensors"));
  }
}

// Network::freeze_if (train.finetune partial): backward leaves the gradient slots of frozen linear
// weights and biases untouched (pre-filled with a sentinel, they keep it: their weight-gradient
// GEMMs and bias sums did not run), and every trained tensor's gradient is bit-identical to an
// unfrozen network's (the input gradients still flow through the frozen layers). Every family,
// every third tensor trained (so the bottom of some networks is frozen, of others trained).
TEST(Finetune, FrozenLinearsGetNoGradient) {
  auto be = make_backend("cpu", "fp32");
  const float kSentinel = 1234.5f;
  for (const char* c : {"cond_p2", "t2i", "dit_p2", "skipdit_p2", "ldit_p1", "mdt_p2_masked",
                        "fit_p2", "fitv1_p2", "diffit_p2", "svg_qknorm_sigma", "lavin_tiny"}) {
    SCOPED_TRACE(c);
    const Config cfg = load_config(kFx + "/" + c + ".json");
    const NetSpec& n = cfg.spec;
    auto full = make_network(cfg, *be), part = make_network(cfg, *be);
    // The twin's weights (the seed's zero adaLN gates would leave most gradients zero).
    full->load_file(kFx + "/" + c + ".pth");
    part->load_file(kFx + "/" + c + ".pth");
    size_t i = 0;
    part->freeze_if([&](const ParamEntry&) { return i++ % 3 != 0; });
    testing::NetInputs in(*be, n, 2);
    const ParamTable& tab = part->table();
    std::vector<float> pre(part->num_params(), 0.f);
    for (const ParamEntry& e : tab.entries())
      if (e.frozen)
        std::fill(pre.begin() + long(e.offset), pre.begin() + long(e.offset + e.numel), kSentinel);
    for (Network* net : {full.get(), part.get()}) {
      net->zero_grad();
      if (net == part.get()) be->upload(net->grads(), pre.data(), pre.size() * 4);
      in.train_pass(*net);
    }
    const std::vector<float> gf = host(*be, full->grads(), full->num_params()),
                             gp = host(*be, part->grads(), part->num_params());
    int untouched = 0, trained = 0;
    for (const ParamEntry& e : tab.entries()) {
      SCOPED_TRACE(e.name);
      if (!e.frozen) {
        EXPECT_EQ(slice(gp, e), slice(gf, e));
        trained += slice(gf, e) != std::vector<float>(e.numel, 0.f);
        continue;
      }
      // A linear's weight (bound by layers::linear) or the bias beside it.
      const std::string stem = e.name.substr(0, e.name.rfind('.'));
      const ParamEntry* w = tab.find(stem + ".weight");
      if (!w || !w->gemm) continue;
      EXPECT_EQ(slice(gp, e), std::vector<float>(e.numel, kSentinel));
      // (MDT's side blocks run in the masked pass only; LaVin's last block has no cond path)
      untouched += slice(gf, e) != std::vector<float>(e.numel, 0.f);  // a gradient to skip
    }
    EXPECT_GT(untouched, 4);
    EXPECT_GT(trained, 2);
  }
}

// The optimizer state of a partial fine-tune holds the trained parameters only (the frozen ones
// have no moments), the checkpoint still holds every parameter's state (zeros for the frozen), and
// a resumed run is bit-identical to a straight one, with AdamW and with Adan (its four buffers).
TEST(Finetune, PartialStateHoldsOnlyTheTrainedParameters) {
  auto be = make_backend("cpu", "fp32");
  const std::string pth = kFx + "/fit_p2.pth";
  for (const char* opt : {"adamw", "adan"}) {
    SCOPED_TRACE(opt);
    Config cfg = fit_partial(pth, 0.05);
    if (std::string(opt) == "adan") {
      cfg.json["optimizer"] = {{"name", "adan"}, {"lr", 1e-3}, {"weight_decay", 0.02}};
      cfg.json["optimizer"]["max_grad_norm"] = 0.05;
      cfg.json["grad_clip"] = 0.0;
    }
    auto data = data_for(cfg);
    uvit_test::TempDir a, b;
    Trainer x(cfg, *be, data, a.dir.string());
    x.init();
    size_t trained = 0, frozen = 0;
    for (const ParamEntry& e : x.net().table().entries())
      (named(kIgnore, e.name) && !e.frozen ? trained : frozen) += e.numel;
    EXPECT_EQ(x.state_floats(), trained);
    EXPECT_GT(frozen, trained);
    Trainer full(training("fit_p2"), *be, data, b.dir.string());
    size_t all = 0;
    for (const auto& [lo, hi] : full.net().table().trained_ranges()) all += hi - lo;
    EXPECT_EQ(full.state_floats(), all);

    x.step();
    x.save();
    x.step();
    x.step();
    x.save();
    NamedArrays state = load_safetensors(a / "train_state.safetensors");
    ASSERT_EQ(state.size(), std::string(opt) == "adan" ? 4u : 2u);
    for (const auto& [name, arr] : state) {
      SCOPED_TRACE(name);
      const std::vector<float> v = arr.to_f32();
      ASSERT_EQ(v.size(), x.net().num_params());
      int live = 0;
      for (const ParamEntry& e : x.net().table().entries()) {
        const std::vector<float> s = slice(v, e);
        if (e.frozen)
          EXPECT_EQ(s, std::vector<float>(e.numel, 0.f)) << e.name;
        else
          live += s != std::vector<float>(e.numel, 0.f);
      }
      EXPECT_GT(live, 4);
    }
    // A run saved at step 1, resumed in another trainer to step 3.
    uvit_test::TempDir c1, c2;
    Trainer s1(cfg, *be, data, c1.dir.string());
    s1.init();
    s1.step();
    s1.save();
    Trainer r(cfg, *be, data, c2.dir.string());
    r.resume(c1.dir.string());
    r.step();
    r.step();
    r.save();
    EXPECT_EQ(values(r.net()), values(x.net()));
    EXPECT_EQ(values(r.ema_net()), values(x.ema_net()));
    NamedArrays got = load_safetensors(c2 / "train_state.safetensors");
    ASSERT_EQ(got.size(), state.size());
    for (size_t k = 0; k < got.size(); ++k) EXPECT_EQ(got[k].second.data, state[k].second.data);
  }
}

TEST(Finetune, BadSettingsAreOneLineErrors) {
  auto be = make_backend("cpu", "fp32");
  Config cfg = fit_partial(kFx + "/fit_p2.pth", 0);
  uvit_test::TempDir a;
  auto data = data_for(cfg);
  auto err = [&](Config c) {
    return uvit_test::error_of([&] {
      Trainer x(c, *be, data, a.dir.string());
      x.init();
    });
  };
  Config c = cfg;
  c.json["train"]["ignore_keys"] = {"x_embedder", "no_such_part"};
  EXPECT_NE(err(c).find("'no_such_part' is part of no parameter name"), std::string::npos);
  c = cfg;
  c.json["train"]["finetune"] = "some";
  EXPECT_NE(err(c).find("train.finetune must be"), std::string::npos);
  c = cfg;
  c.json["train"].erase("ignore_keys");
  EXPECT_NE(err(c).find("give train.ignore_keys"), std::string::npos);
  c = cfg;
  c.json["train"]["init_weights"] = kFx + "/no_such.pth";
  EXPECT_NE(err(c).find("no_such.pth: no such file"), std::string::npos);
  c = cfg;
  c.json["train"]["init_weights"] = kFx + "/dit_p2.pth";  // another network
  EXPECT_NE(err(c).find("dit_p2.pth: "), std::string::npos);
}

}  // namespace
}  // namespace uvit
