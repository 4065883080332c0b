// The training loop (SPEC 7.3, 16): noise the batch, epsilon-MSE, backward, AdamW at the warm-up
// learning rate, EMA. All randomness is counter-based: update u's draws depend only on (seed, u).
#include <algorithm>
#include <cmath>
#include <filesystem>

#include "uvit/error.hpp"
#include "uvit/generate.hpp"
#include "uvit/io.hpp"
#include "uvit/rng.hpp"
#include "uvit/train.hpp"

namespace fs = std::filesystem;

namespace uvit {

namespace {
// Philox streams of the trainer (kept apart from the data loader's and the samplers').
constexpr uint64_t kStreamTime = (uint64_t(7) << 40) + 1;
constexpr uint64_t kStreamNoise = (uint64_t(7) << 40) + 2;
}  // namespace

TrainSettings train_settings(const Config& c) {
  const auto& j = c.json;
  auto sec = [&](const char* k) { return j.contains(k) ? j[k] : nlohmann::json::object(); };
  TrainSettings s;
  auto tr = sec("train"), op = sec("optimizer"), lr = sec("lr_scheduler");
  s.steps = tr.value("n_steps", 1000L);
  s.batch = tr.value("batch_size", 64);
  s.log_interval = tr.value("log_interval", 10L);
  s.eval_interval = tr.value("eval_interval", 5000L);
  s.save_interval = tr.value("save_interval", 50000L);
  s.grad_clip = j.value("grad_clip", 0.0);  // top level, as official
  s.accum = tr.value("accum", 1);
  s.keep_snapshots = tr.value("keep_snapshots", 3);
  s.seed = j.value("seed", uint64_t(1234));
  s.lr = op.value("lr", 2e-4);
  s.weight_decay = op.value("weight_decay", 0.03);
  s.eps = op.value("eps", 1e-8);
  if (op.contains("betas")) {
    UVIT_CHECK(op["betas"].is_array() && op["betas"].size() == 2, "config ", c.config_name,
               ": optimizer.betas must be [beta1, beta2]");
    s.beta1 = op["betas"][0].get<double>();
    s.beta2 = op["betas"][1].get<double>();
  }
  s.warmup = lr.value("warmup_steps", 0L);
  s.ema_rate = j.value("ema_rate", 0.9999);
  UVIT_CHECK(s.batch > 0, "config ", c.config_name, ": train.batch_size must be positive");
  UVIT_CHECK(s.steps >= 0, "config ", c.config_name, ": train.n_steps must be >= 0");
  UVIT_CHECK(s.accum >= 1, "config ", c.config_name, ": train.accum must be >= 1");
  UVIT_CHECK(s.keep_snapshots >= 1, "config ", c.config_name,
             ": train.keep_snapshots must be >= 1");
  UVIT_CHECK(s.log_interval >= 1 && s.eval_interval >= 1 && s.save_interval >= 1, "config ",
             c.config_name, ": train.log_interval, eval_interval and save_interval must be >= 1");
  UVIT_CHECK(s.lr >= 0 && s.ema_rate >= 0 && s.ema_rate <= 1, "config ", c.config_name,
             ": optimizer.lr must be >= 0 and ema_rate in [0, 1]");
  return s;
}

double warmup_factor(long update, long warmup) {
  if (warmup <= 0) return 1.0;
  return std::min(double(update) / double(warmup), 1.0);
}

Trainer::Trainer(Config cfg, Backend& be, std::shared_ptr<Dataset> data, std::string run_dir)
    : cfg_(std::move(cfg)),
      be_(be),
      data_(std::move(data)),
      dir_(std::move(run_dir)),
      s_(train_settings(cfg_)),
      objective_(make_objective(cfg_)) {
  const NetSpec& n = cfg_.spec;
  auto shape = data_->item_shape();
  UVIT_CHECK(shape[0] == n.in_chans && shape[1] == n.img_size && shape[2] == n.img_size, "dataset ",
             data_->describe(), ": items are [", shape[0], ", ", shape[1], ", ", shape[2],
             "] but config ", cfg_.config_name, " expects [", n.in_chans, ", ", n.img_size, ", ",
             n.img_size, "]");
  if (n.class_conditional())
    UVIT_CHECK(data_->num_classes() > 0 && data_->num_classes() <= n.num_classes, "dataset ",
               data_->describe(), " has ", data_->num_classes(), " classes; config ",
               cfg_.config_name, " has num_classes ", n.num_classes);
  if (n.text_conditional()) {
    auto cs = data_->context_shape();
    UVIT_CHECK(cs[0] == n.context_tokens && cs[1] == n.context_dim, "dataset ", data_->describe(),
               ": contexts are [", cs[0], ", ", cs[1], "], config expects [", n.context_tokens,
               ", ", n.context_dim, "]");
  }
  net_ = make_network(cfg_, be_);
  ema_ = make_network(cfg_, be_);
  const size_t P = net_->num_params(), B = size_t(s_.batch);
  m_ = DeviceBuffer(be_, P * 4);
  v_ = DeviceBuffer(be_, P * 4);
  dx_ = DeviceBuffer(be_, B * n.in_numel() * 4);
  dout_ = DeviceBuffer(be_, B * n.out_numel() * 4);
  dt_ = DeviceBuffer(be_, B * 4);
  dy_ = DeviceBuffer(be_, B * sizeof(int32_t));
  if (n.text_conditional()) dctx_ = DeviceBuffer(be_, B * n.context_numel() * 4);
  LoaderOptions lo = loader_options(data_options_from_json(cfg_.json), s_.batch, s_.seed);
  loader_ = std::make_unique<Loader>(data_, lo);
}

Trainer::~Trainer() { loader_.reset(); }

void Trainer::init() {
  net_->init_random(s_.seed);
  be_.copy(ema_->params(), net_->params(), net_->num_params());
  be_.fill(m_.f32(), 0.f, net_->num_params());
  be_.fill(v_.f32(), 0.f, net_->num_params());
  step_ = 0;
  loader_->set_state({s_.seed, 0, 0});
}

StepStats Trainer::step() {
  const NetSpec& n = cfg_.spec;
  const int B = s_.batch;
  const size_t item = n.in_numel(), numel = B * item, onumel = B * n.out_numel();
  const bool cls = n.class_conditional();
  StepStats st;
  net_->zero_grad();
  std::vector<float> x(numel), eps(numel), out(onumel), dout(onumel), tnet(B);
  std::vector<TrainDraw> draws(B);
  std::vector<int32_t> y(B);
  for (int micro = 0; micro < s_.accum; ++micro) {
    Batch b = loader_->next();
    UVIT_CHECK(b.B == B && b.x.size() == numel, "data loader returned a batch of ", b.B,
               ", expected ", B);
    const uint64_t draw = uint64_t(step_) * s_.accum + micro;
    Philox(s_.seed, kStreamNoise).fill_normal(eps.data(), numel, draw * numel);
    const Philox tr(s_.seed, kStreamTime);
    for (int i = 0; i < B; ++i) {
      draws[i] = objective_->draw(tr.uniform(draw * B + i));
      tnet[i] = draws[i].net_time;
      const float a = float(draws[i].mean), s = float(draws[i].std);
      for (size_t k = 0; k < item; ++k)
        x[i * item + k] = a * b.x[i * item + k] + s * eps[i * item + k];
      if (cls) {
        UVIT_CHECK(b.labels[i] >= 0 && b.labels[i] < n.num_classes, "data: label ", b.labels[i],
                   " is outside [0, ", n.num_classes, ")");
        y[i] = int32_t(b.labels[i]);
      }
    }
    be_.upload(dx_.f32(), x.data(), numel * 4);
    be_.upload(dt_.f32(), tnet.data(), B * 4);
    if (cls) be_.upload(dy_.as(), y.data(), B * 4);
    if (n.text_conditional()) be_.upload(dctx_.f32(), b.context.data(), b.context.size() * 4);
    net_->forward(dx_.f32(), dt_.f32(), cls ? dy_.as<int32_t>() : nullptr, dctx_.f32(), dout_.f32(),
                  B, true);
    be_.download(out.data(), dout_.f32(), onumel * 4);
    st.loss += objective_->loss(out.data(), eps.data(), b.x.data(), draws.data(), B, item,
                                n.out_numel(), s_.accum, dout.data()) /
               s_.accum;
    be_.upload(dout_.f32(), dout.data(), onumel * 4);
    net_->backward(dout_.f32());
  }
  const size_t P = net_->num_params();
  st.grad_norm = std::sqrt(be_.sum_squares(net_->grads(), P));
  if (s_.grad_clip > 0 && st.grad_norm > s_.grad_clip)  // torch clip_grad_norm_
    be_.scale(net_->grads(), float(s_.grad_clip / (st.grad_norm + 1e-6)), P);
  st.lr = s_.lr * warmup_factor(step_, s_.warmup);
  be_.adamw(net_->params(), net_->grads(), m_.f32(), v_.f32(), P, float(st.lr), float(s_.beta1),
            float(s_.beta2), float(s_.eps), float(s_.weight_decay), step_ + 1);
  be_.ema(ema_->params(), net_->params(), P, float(s_.ema_rate));
  ++step_;
  return st;
}

namespace {
void write_state(const std::string& dir, Trainer& t, Backend& be, const float* m, const float* v,
                 const LoaderState& ls) {
  fs::create_directories(dir);
  const std::map<std::string, std::string> meta = {{"step", std::to_string(t.step_count())},
                                                   {"config", t.config().config_name}};
  save_safetensors(dir + "/nnet.safetensors", t.net().export_weights(), meta);
  save_safetensors(dir + "/nnet_ema.safetensors", t.ema_net().export_weights(), meta);
  const size_t P = t.net().num_params();
  NamedArrays st;
  Array am(DType::F32, {int64_t(P)}), av(DType::F32, {int64_t(P)});
  be.download(am.data.data(), m, P * 4);
  be.download(av.data.data(), v, P * 4);
  st.emplace_back("adamw.exp_avg", std::move(am));
  st.emplace_back("adamw.exp_avg_sq", std::move(av));
  auto meta2 = meta;
  meta2["loader_seed"] = std::to_string(ls.seed);
  meta2["loader_epoch"] = std::to_string(ls.epoch);
  meta2["loader_offset"] = std::to_string(ls.offset);
  meta2["num_params"] = std::to_string(P);
  save_safetensors(dir + "/train_state.safetensors", st, meta2);  // written last: marks completion
}
}  // namespace

void Trainer::save(bool snapshot) {
  const LoaderState ls = loader_->get_state();
  write_state(dir_, *this, be_, m_.f32(), v_.f32(), ls);
  if (!snapshot) return;
  const fs::path root = fs::path(dir_) / "ckpts";
  write_state((root / std::to_string(step_)).string(), *this, be_, m_.f32(), v_.f32(), ls);
  std::vector<long> steps;
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    if (e.is_directory() && !name.empty() &&
        name.find_first_not_of("0123456789") == std::string::npos)
      steps.push_back(std::stol(name));
  }
  std::sort(steps.begin(), steps.end());
  for (size_t i = 0; i + s_.keep_snapshots < steps.size(); ++i)
    fs::remove_all(root / std::to_string(steps[i]));
}

void Trainer::resume() {
  const std::string sp = dir_ + "/train_state.safetensors";
  UVIT_CHECK(fs::exists(sp), dir_, ": nothing to resume (no train_state.safetensors)");
  std::map<std::string, std::string> meta;
  NamedArrays st = load_safetensors(sp, &meta);
  auto need = [&](const char* k) {
    UVIT_CHECK(meta.count(k), sp, ": metadata lacks '", k, "'");
    return meta.at(k);
  };
  const size_t P = net_->num_params();
  UVIT_CHECK(std::stoull(need("num_params")) == P, sp, ": holds ", need("num_params"),
             " parameters, config ", cfg_.config_name, " has ", P);
  UVIT_CHECK(st.size() == 2 && st[0].first == "adamw.exp_avg" &&
                 st[1].first == "adamw.exp_avg_sq" && st[0].second.numel() == int64_t(P) &&
                 st[1].second.numel() == int64_t(P),
             sp, ": unexpected optimizer state layout");
  const long step = std::stol(need("step"));
  std::map<std::string, std::string> m1, m2;
  NamedArrays w = load_safetensors(dir_ + "/nnet.safetensors", &m1);
  NamedArrays we = load_safetensors(dir_ + "/nnet_ema.safetensors", &m2);
  UVIT_CHECK(m1["step"] == need("step") && m2["step"] == need("step"), dir_,
             ": nnet.safetensors, nnet_ema.safetensors and train_state.safetensors are from "
             "different steps (an interrupted save?); restore from a snapshot in ckpts/");
  net_->load(w, dir_ + "/nnet.safetensors");
  ema_->load(we, dir_ + "/nnet_ema.safetensors");
  std::vector<float> h = st[0].second.to_f32();
  be_.upload(m_.f32(), h.data(), P * 4);
  h = st[1].second.to_f32();
  be_.upload(v_.f32(), h.data(), P * 4);
  step_ = step;
  loader_->set_state({std::stoull(need("loader_seed")), std::stoll(need("loader_epoch")),
                      std::stoll(need("loader_offset"))});
}

}  // namespace uvit
