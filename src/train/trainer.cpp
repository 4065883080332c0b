// The training loop (SPEC 7.3, 16): noise the batch, epsilon-MSE, backward, AdamW (or Adan,
// docs/mdt_diffusion.md) at the warm-up learning rate, EMA. All randomness is counter-based: update
// u's draws depend only on (seed, u).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <set>
#include <string>

#include "core/mem_limit.hpp"
#include "dist/weights_hash.hpp"
#include "io/file.hpp"
#include "io/loaded_weights.hpp"
#include "models/param_stage.hpp"
#include "train/grad_overlap.hpp"
#include "train/grad_pages.hpp"
#include "train/save_commit.hpp"
#include "train/save_room.hpp"
#include "train/snapshots.hpp"
#include "uvit/error.hpp"
#include "uvit/generate.hpp"
#include "uvit/io.hpp"
#include "uvit/log.hpp"
#include "uvit/quant.hpp"
#include "uvit/rng.hpp"
#include "uvit/train.hpp"

namespace fs = std::filesystem;

namespace uvit {

namespace {
// Philox streams of the trainer (kept apart from the data loader's and the samplers').
constexpr uint64_t kStreamTime = (uint64_t(7) << 40) + 1;
constexpr uint64_t kStreamNoise = (uint64_t(7) << 40) + 2;
constexpr uint64_t kStreamNoise2 = (uint64_t(7) << 40) + 3;  // a second training pass's noise

// Whether one of `keys` is part of the official parameter name (FiT's `ign in key`).
bool named_by(const std::vector<std::string>& keys, const std::string& name) {
  for (const std::string& k : keys)
    if (name.find(k) != std::string::npos) return true;
  return false;
}
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
  s.dp_virtual = tr.value("dp_virtual", 0);
  s.zero = tr.value("zero", 0);
  if (tr.contains("overlap")) {
    UVIT_CHECK(tr["overlap"].is_boolean(), "config ", c.config_name,
               ": train.overlap must be true or false, got ", tr["overlap"].dump());
    s.overlap = tr["overlap"].get<bool>();
  }
  s.seed = j.value("seed", uint64_t(1234));
  s.optimizer = op.value("name", std::string("adamw"));
  const bool adan = s.optimizer == "adan";
  UVIT_CHECK(adan || s.optimizer == "adamw", "config ", c.config_name, ": optimizer.name \"",
             s.optimizer, "\" is not \"adamw\" or \"adan\"");
  s.lr = op.value("lr", adan ? 1e-3 : 2e-4);
  s.weight_decay = op.value("weight_decay", adan ? 0.0 : 0.03);
  s.eps = op.value("eps", 1e-8);
  if (adan) s.beta1 = 0.98, s.beta2 = 0.92, s.beta3 = 0.99;
  if (op.contains("betas")) {
    const size_t k = adan ? 3 : 2;
    UVIT_CHECK(op["betas"].is_array() && op["betas"].size() == k, "config ", c.config_name,
               ": optimizer.betas must be ",
               adan ? "[beta1, beta2, beta3] for adan" : "[beta1, beta2]");
    s.beta1 = op["betas"][0].get<double>();
    s.beta2 = op["betas"][1].get<double>();
    if (adan) s.beta3 = op["betas"][2].get<double>();
  }
  s.max_grad_norm = op.value("max_grad_norm", 0.0);
  s.no_prox = op.value("no_prox", false);
  UVIT_CHECK(adan || (s.max_grad_norm == 0 && !s.no_prox), "config ", c.config_name,
             ": optimizer.max_grad_norm and no_prox are Adan options (AdamW clips with grad_clip)");
  UVIT_CHECK(!adan || s.grad_clip == 0, "config ", c.config_name,
             ": Adan clips with optimizer.max_grad_norm; remove grad_clip");
  UVIT_CHECK(s.eps > 0 && s.max_grad_norm >= 0, "config ", c.config_name,
             ": optimizer.eps must be positive and max_grad_norm >= 0");
  // Fine-tuning (docs/cli.md "Fine-tuning"): FiT's pretrain_ckpt, ignore_keys and finetune.
  if (tr.contains("init_weights") && !tr["init_weights"].is_null()) {
    UVIT_CHECK(tr["init_weights"].is_string(), "config ", c.config_name,
               ": train.init_weights must be a file path or null");
    s.init_weights = tr["init_weights"].get<std::string>();
  }
  if (tr.contains("ignore_keys") && !tr["ignore_keys"].is_null()) {
    const auto& k = tr["ignore_keys"];
    bool ok = k.is_array();
    for (size_t i = 0; ok && i < k.size(); ++i)
      ok = k[i].is_string() && !k[i].get_ref<const std::string&>().empty();
    UVIT_CHECK(ok, "config ", c.config_name,
               ": train.ignore_keys must be a list of non-empty strings (parameter name parts)");
    for (const auto& e : k) s.ignore_keys.push_back(e.get<std::string>());
  }
  if (tr.contains("finetune") && !tr["finetune"].is_null()) {
    const std::string f = tr["finetune"].is_string() ? tr["finetune"].get<std::string>() : "";
    UVIT_CHECK(f == "full" || f == "partial", "config ", c.config_name,
               ": train.finetune must be \"full\", \"partial\" or null, got ",
               tr["finetune"].dump());
    s.partial = f == "partial";
  }
  UVIT_CHECK(!s.partial || !s.ignore_keys.empty(), "config ", c.config_name,
             ": train.finetune \"partial\" trains only the parameters train.ignore_keys names; "
             "give train.ignore_keys");
  s.warmup = lr.value("warmup_steps", 0L);
  s.ema_rate = j.value("ema_rate", 0.9999);
  UVIT_CHECK(s.batch > 0, "config ", c.config_name, ": train.batch_size must be positive");
  UVIT_CHECK(s.steps >= 0, "config ", c.config_name, ": train.n_steps must be >= 0");
  UVIT_CHECK(s.accum >= 1, "config ", c.config_name, ": train.accum must be >= 1");
  UVIT_CHECK(s.keep_snapshots >= 1, "config ", c.config_name,
             ": train.keep_snapshots must be >= 1");
  UVIT_CHECK(s.dp_virtual >= 0, "config ", c.config_name, ": train.dp_virtual must be >= 0, got ",
             s.dp_virtual);
  UVIT_CHECK(s.zero >= 0 && s.zero <= 2, "config ", c.config_name,
             ": train.zero must be 0 (off), 1 (moments) or 2 (moments and gradient), got ", s.zero,
             " (docs/distributed.md)");
  UVIT_CHECK(s.log_interval >= 1 && s.eval_interval >= 1 && s.save_interval >= 1, "config ",
             c.config_name, ": train.log_interval, eval_interval and save_interval must be >= 1");
  UVIT_CHECK(s.lr >= 0 && s.ema_rate >= 0 && s.ema_rate <= 1, "config ", c.config_name,
             ": optimizer.lr must be >= 0 and ema_rate in [0, 1]");
  return s;
}

double grad_clip_factor(const TrainSettings& s, double norm) {
  if (s.optimizer == "adan") {
    if (s.max_grad_norm <= 0) return 1.0;
    return std::min(float(s.max_grad_norm) / (float(norm) + float(s.eps)), 1.f);
  }
  if (s.grad_clip > 0 && norm > s.grad_clip) return s.grad_clip / (norm + 1e-6);
  return 1.0;
}

double warmup_factor(long update, long warmup) {
  if (warmup <= 0) return 1.0;
  return std::min(double(update) / double(warmup), 1.0);
}

int data_parallel_width(const TrainSettings& s, int ranks) {
  const int V = s.dp_virtual > 0 ? s.dp_virtual : ranks;
  UVIT_CHECK(V % ranks == 0, "train.dp_virtual ", V, " is not a multiple of the ", ranks,
             " ranks of this job");
  UVIT_CHECK(s.batch % (V * s.accum) == 0, "batch ", s.batch, " does not split into ", V,
             " data-parallel slices of ", s.accum,
             " micro-batches (ranks or train.dp_virtual, train.accum)");
  return V;
}

Trainer::Trainer(Config cfg, Backend& be, std::shared_ptr<Dataset> data, std::string run_dir,
                 Comm* comm, const EmaSampling* sampling)
    : cfg_(std::move(cfg)),
      be_(be),
      data_(std::move(data)),
      dir_(std::move(run_dir)),
      s_(train_settings(cfg_)),
      objective_(make_objective(cfg_)) {
  const NetSpec& n = cfg_.spec;
  auto shape = data_->item_shape();
  UVIT_CHECK(shape[0] == n.in_chans && shape[1] == n.img_size && shape[2] == n.width(), "dataset ",
             data_->describe(), ": items are [", shape[0], ", ", shape[1], ", ", shape[2],
             "] but config ", cfg_.config_name, " expects [", n.in_chans, ", ", n.img_size, ", ",
             n.width(), "]");
  if (n.class_conditional())
    UVIT_CHECK(data_->num_classes() > 0 && data_->num_classes() <= n.real_classes(), "dataset ",
               data_->describe(), " has ", data_->num_classes(), " classes; config ",
               cfg_.config_name, " has ", n.real_classes(), " (besides its null class)");
  if (n.text_conditional()) {
    auto cs = data_->context_shape();
    UVIT_CHECK(cs[0] == n.context_tokens && cs[1] == n.context_dim, "dataset ", data_->describe(),
               ": contexts are [", cs[0], ", ", cs[1], "], config expects [", n.context_tokens,
               ", ", n.context_dim, "]");
  }
  // Data parallelism (docs/distributed.md): logical rank v of V covers micro-batches v*A .. v*A +
  // A-1 of the step; this process holds logical ranks rank*k .. rank*k + k-1.
  comm_ = comm ? comm : &single_;
  const int W = comm_->size();
  V_ = data_parallel_width(s_, W);
  k_ = V_ / W;
  micro_ = s_.batch / (V_ * s_.accum);
  // Every buffer the run holds is allocated untouched first and checked as a whole, so a batch
  // that cannot fit is refused before init() or resume() (docs/memory.md, "Refused up front").
  MemPlan plan;
  net_ = make_network(cfg_, be_);
  ema_ = make_network(cfg_, be_);
  // The parameters the optimizer updates: train.finetune partial keeps only those ignore_keys
  // names (FiT's finetune(): requires_grad by substring of the official name).
  for (const std::string& k : s_.ignore_keys) {
    bool found = false;
    for (const ParamEntry& e : net_->table().entries())
      found = found || e.name.find(k) != std::string::npos;
    UVIT_CHECK(found, "train.ignore_keys: '", k, "' is part of no parameter name of network ",
               n.name, " (`uvit info --json -c CONFIG` lists them)");
  }
  // The others are frozen in the network itself, so that its backward skips their gradients
  // (their weight-gradient GEMMs) as torch does for requires_grad=False.
  if (s_.partial)
    net_->freeze_if([&](const ParamEntry& e) { return !named_by(s_.ignore_keys, e.name); });
  trained_ = net_->table().trained_ranges();
  packed_at_.assign(1, 0);
  for (const auto& [b, e] : trained_) packed_at_.push_back(packed_at_.back() + (e - b));
  UVIT_CHECK(!trained_.empty(), "config ", cfg_.config_name,
             ": no parameter is trained (train.ignore_keys names only fixed tensors)");
  UVIT_CHECK(!data_->variable_size() || net_->packs_sizes(), "dataset ", data_->describe(),
             " has items of varying size, which network ", n.name,
             " cannot batch (only fitv2 and fitv1 pack them; docs/fit.md)");
  const size_t P = net_->num_params(), B = size_t(micro_);
  // Shards of a multiple of 16 floats (64 bytes), the last one cut short by P.
  shard_ = shard_size(P, W);
  // ZeRO (docs/distributed.md): 1 shards the optimizer state; 2 also the gradient, which needs
  // its ranges exchanged as backward announces them: one slice per process, no accumulation, host
  // buffers (CPU). Elsewhere train.zero=2 runs as ZeRO-1 (the same files) and says why.
  const bool several = k_ > 1 || s_.accum > 1,
             device = W > 1 && (comm_->device_buffers() || !ParamStage::host_memory(be_));
  zero_level_ = W > 1 ? s_.zero : 0;
  if (zero_level_ == 2 && (several || device)) {
    zero_level_ = 1;
    if (comm_->rank() == 0)
      std::fprintf(stderr,
                   "note: train.zero=2 runs as ZeRO-1 here (%s): ZeRO-2 needs one slice per "
                   "process, train.accum 1 and CPU ranks (docs/distributed.md, \"ZeRO-2\")\n",
                   several ? "several slices or micro-batches per process" : "not on CUDA");
  }
  const bool zero = sharded();
  // The optimizer state holds the trained floats of this rank's part of the parameter vector
  // (all of it, or its ZeRO-1 shard) only, packed in order: a frozen parameter has no moments.
  mom_lo_ = zero ? std::min(P, size_t(comm_->rank()) * shard_) : 0;
  mom_base_ = packed(mom_lo_);
  moments_n_ = packed(zero ? std::min(P, mom_lo_ + shard_) : P) - mom_base_;
  m_ = DeviceBuffer(be_, moments_n_ * 4);
  v_ = DeviceBuffer(be_, moments_n_ * 4);
  if (s_.optimizer == "adan") {
    d_ = DeviceBuffer(be_, moments_n_ * 4);
    gp_ = DeviceBuffer(be_, moments_n_ * 4);
  }
  // No gradient-sized buffer besides the network's own gradients unless this process adds several
  // (slices or micro-batches): the reduction works in place (docs/distributed.md, "Memory").
  if (k_ > 1 || s_.accum > 1) acc_ = DeviceBuffer(be_, size_t(k_) * P * 4);
  if (zero) part_ = DeviceBuffer(be_, shard_ * 4);                         // zeroed below
  if (W > 1 && !comm_->device_buffers() && !ParamStage::host_memory(be_))  // CUDA, no NCCL
    host_acc_.resize(size_t(k_) * P);
  // train.overlap (docs/distributed.md, "Overlap"): the direct case on host buffers only.
  // train.zero=2 exchanges the announced ranges too: on the main thread when they cannot overlap.
  if (W > 1) {
    const char* off = !s_.overlap                 ? "train.overlap false"
                      : several                   ? "several slices or micro-batches"
                      : device                    ? "not on CUDA"
                      : !comm_->overlap_threads() ? "MPI did not grant MPI_THREAD_SERIALIZED"
                                                  : nullptr;
    const bool ranged = !off || zero_level_ == 2;
    overlapped_ = !off;
    exchange_mode_ = !off     ? std::string("overlapped with backward")
                     : ranged ? cat("in backward, range by range (train.zero=2; ", off, ")")
                              : cat("after backward (", off, ")");
    if (ranged) {
      overlap_ = std::make_unique<GradOverlap>(
          [this](size_t lo, size_t hi) { exchange_range(lo, hi); }, overlapped_);
      net_->on_grads_ready([this](size_t lo, size_t hi) {
        if (overlap_armed_) overlap_->ready(lo, hi);
      });
    }
  }
  if (zero_level_ == 2) {  // the gradient's pages come and go (src/train/grad_pages.hpp)
    pages_ = std::make_unique<GradPages>(P);
    net_->use_grads(pages_->data(), [this] { pages_->clear(); });
  }
  // The model's part of the need, whatever the batch; the gradient is reserve()'s (ZeRO-2's pages
  // are not counted: docs/memory.md).
  plan.mark_model(
      zero_level_ == 2 ? 0 : P * 4,
      cat("parameters, gradient, ", s_.optimizer == "adan" ? "Adan" : "AdamW", " moments and EMA"));
  dx_ = DeviceBuffer(be_, B * n.in_numel() * 4);
  dout_ = DeviceBuffer(be_, B * n.out_numel() * 4);
  dt_ = DeviceBuffer(be_, B * 4);
  dy_ = DeviceBuffer(be_, B * sizeof(int32_t));
  if (n.text_conditional()) dctx_ = DeviceBuffer(be_, B * n.context_numel() * 4);
  // The gradient and one micro-batch's activations (packed: the largest batch of any sizes).
  net_->reserve(micro_, true, data_->variable_size());
  // The sample grid's: the EMA network's activations stay; the sampler's buffers come back then.
  std::optional<SamplingBuffers> grid;
  if (sampling) {
    grid.emplace(*ema_, cfg_, with_preset_defaults(cfg_, sampling->opt), sampling->n);
    plan.count_host(grid->host_bytes());
  }
  plan.check();
  // The reduced gradient of this rank's shard (ZeRO): its padding stays zero.
  if (zero) be_.fill(part_.f32(), 0.f, shard_);
  LoaderOptions lo = loader_options(data_options_from_json(cfg_.json), micro_, s_.seed);
  lo.group = int64_t(V_) * s_.accum;
  lo.take_first = int64_t(comm_->rank()) * k_ * s_.accum;
  lo.take_count = int64_t(k_) * s_.accum;
  // stage_batches takes a whole step's batches at once: the loader keeps the next step's ready.
  lo.prefetch = std::max(lo.prefetch, k_ * s_.accum);
  if (n.null_class >= 0) lo.null_label = n.null_class;
  loader_ = std::make_unique<Loader>(data_, lo);
}

Trainer::~Trainer() { loader_.reset(); }

void Trainer::init() {
  net_->init_random(s_.seed);
  if (!s_.init_weights.empty()) load_init_weights();
  be_.copy(ema_->params(), net_->params(), net_->num_params());
  if (moments_n_ > 0)
    for (auto& [name, buf] : state_buffers()) be_.fill(buf->f32(), 0.f, moments_n_);
  step_ = 0;
  loader_->set_state({s_.seed, 0, 0});
  done_ = loader_->get_state();
}

// As FiT's init_from_ckpt: the checkpoint's tensors whose names ignore_keys names are dropped and
// keep the seed's values. Every rank reads the file (the same bits everywhere), opened once: its
// metadata is checked and kept from the reader the load uses. The check is load_file's strict
// one, so a file for another network fails naming the first tensor that differs.
void Trainer::load_init_weights() {
  const std::string& path = s_.init_weights;
  check_weights_path(path, "train.init_weights (--init) ");
  const std::unique_ptr<TensorReader> r = open_weights(path);
  UVIT_CHECK(!r->metadata().count(kQuantKey), path,
             ": the weights are quantised; fine-tuning needs the fp32 weights");
  init_metadata_ = r->metadata();
  if (s_.ignore_keys.empty()) {
    net_->load_reader(*r);
    return;
  }
  ema_->load_reader(*r);  // as scratch: init() then makes the EMA a copy of the network
  for (const ParamEntry& e : net_->table().entries())
    if (!named_by(s_.ignore_keys, e.name))
      be_.copy(net_->params() + e.offset, ema_->params() + e.offset, e.numel);
}

void Trainer::zero_frozen(float* g, size_t off, size_t len) {
  size_t at = off;  // where the next frozen gap starts
  auto zero_to = [&](size_t end) {
    const size_t hi = std::min(end, off + len);
    if (hi > at) be_.fill(g + (at - off), 0.f, hi - at);
  };
  for (const auto& [b, e] : trained_) {
    zero_to(b);
    at = std::max(at, e);
  }
  zero_to(off + len);
}

std::string Trainer::stage_batches() {
  staged_.clear();
  try {
    for (int i = 0; i < k_ * s_.accum; ++i) staged_.push_back(loader_->next());
  } catch (const Error& e) {
    staged_.clear();
    return e.what();
  }
  return "";
}

StepStats Trainer::step() {
  const NetSpec& n = cfg_.spec;
  const int B = micro_, A = s_.accum;
  const size_t item = n.in_numel(), numel = B * item, onumel = B * n.out_numel();
  const size_t P = net_->num_params();
  const bool cls = n.class_conditional(),
             direct = acc_.f32() == nullptr;  // direct: one slice here, no accumulation
  StepStats st;
  if (direct) net_->zero_grad();
  std::vector<float> x(numel), eps(numel), out(onumel), dout(onumel), tnet(B);
  std::vector<TrainDraw> draws(B);
  std::vector<int32_t> y(B);
  std::vector<double> losses(size_t(k_), 0.0);  // per logical rank
  if (staged_.empty())
    if (const std::string e = stage_batches(); !e.empty()) throw DataError(e);
  for (int j = 0; j < k_; ++j) {
    const int v = comm_->rank() * k_ + j;
    for (int micro = 0; micro < A; ++micro) {
      const Batch& b = staged_[size_t(j * A + micro)];
      UVIT_CHECK(b.B == B && b.x.size() == numel, "data loader returned a batch of ", b.B,
                 ", expected ", B);
      // All randomness is keyed by the sample's index in the global batch stream, so the data
      // and noise do not depend on how the batch is split.
      const uint64_t first = uint64_t(step_) * s_.batch + uint64_t(v * A + micro) * B;
      if (!direct) net_->zero_grad();  // each micro-batch's gradient on its own, then added
      // MDT's masked training runs a second pass with the same data, times and labels and fresh
      // noise (docs/mdt.md); the passes' gradients and losses add.
      for (int pass = 0; pass < net_->train_passes(); ++pass) {
        Philox(s_.seed, pass ? kStreamNoise2 : kStreamNoise)
            .fill_normal(eps.data(), numel, first * item);
        const Philox tr(s_.seed, kStreamTime);
        for (int i = 0; i < B; ++i) {
          draws[i] = objective_->draw(tr.uniform(first + i));
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
        net_->set_train_pass(pass, s_.seed, first);
        if (!b.sizes.empty()) net_->set_valid_sizes(b.sizes);  // a variable-size batch (FiTv2)
        net_->forward(dx_.f32(), dt_.f32(), cls ? dy_.as<int32_t>() : nullptr, dctx_.f32(),
                      dout_.f32(), B, true);
        be_.download(out.data(), dout_.f32(), onumel * 4);
        losses[size_t(j)] +=
            (b.sizes.empty() ? objective_->loss(out.data(), eps.data(), b.x.data(), draws.data(), B,
                                                item, n.out_numel(), V_ * A, dout.data())
                             : objective_->loss_masked(
                                   out.data(), eps.data(), b.x.data(), draws.data(), B, n.in_chans,
                                   n.img_size, n.width(), b.sizes.data(), V_ * A, dout.data())) /
            A;
        be_.upload(dout_.f32(), dout.data(), onumel * 4);
        // train.overlap: the step's (direct, so only) backward exchanges what it announces final
        // during its last pass (earlier passes add to the same gradient).
        overlap_armed_ = overlap_ && pass + 1 == net_->train_passes();
        if (overlap_armed_) overlap_->begin(P);
        net_->backward(dout_.f32());
        overlap_armed_ = false;
      }
      if (direct) continue;
      float* r = acc_.f32() + size_t(j) * P;
      if (micro == 0)
        be_.copy(r, net_->grads(), P);
      else
        be_.axpy(r, net_->grads(), 1.f, P);
    }
  }
  // The loss of the whole batch: the logical ranks' means added in order.
  const auto c0 = std::chrono::steady_clock::now();
  if (overlap_) overlap_->finish();  // the rest of [0, P), then every range exchanged
  const std::vector<double> all = allgather_doubles(*comm_, losses);
  for (double l : all) st.loss += l;
  st.loss /= V_;
  st.lr = s_.lr * warmup_factor(step_, s_.warmup);
  if (sharded()) {
    zero_update(st.lr);  // (its optimizer update counts as exchange time too)
    st.grad_norm = last_norm_;
    st.comm_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count();
    be_.ema(ema_->params(), net_->params(), P, float(s_.ema_rate));  // the gathered parameters
  } else {
    float* g = overlap_ ? net_->grads() : reduce_gradients();
    st.comm_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count();
    if (s_.partial) zero_frozen(g, 0, P);
    st.grad_norm = std::sqrt(be_.sum_squares(g, P));
    if (const double c = grad_clip_factor(s_, st.grad_norm); c != 1.0) be_.scale(g, float(c), P);
    update_trained(net_->params(), g, 0, P, st.lr, ema_->params());  // and the EMA
  }
  staged_.clear();
  ++step_;
  done_ = loader_->get_state();
  return st;
}

float* Trainer::slice_grads() { return acc_.f32() ? acc_.f32() : net_->grads(); }

float* Trainer::reduce_gradients() {
  const size_t P = net_->num_params();
  float* g = slice_grads();
  if (comm_->size() == 1) {  // ((g_0 + g_1) + g_2) + ... into g_0
    for (int j = 1; j < k_; ++j) be_.axpy(g, g + size_t(j) * P, 1.f, P);
    return g;
  }
  reduce_shard(g, own(g));  // in place: this rank's shard of g_0 becomes the sum's
  share_shards(g);
  return g;
}

void Trainer::exchange_range(size_t lo, size_t hi) {
  const size_t P = net_->num_params();
  float* g = net_->grads();
  comm_->reduce_scatter_range(g, 1, P, P, shard_, lo, hi, sharded() ? part_.f32() : own(g));
  if (!sharded()) comm_->allgather_range(g, P, shard_, lo, hi);
  if (pages_) pages_->reduced(lo, hi);  // ZeRO-2: the range's sum is in part_
}

size_t Trainer::own_len() const { return shard_len(net_->num_params(), shard_, comm_->rank()); }

float* Trainer::own(float* v) const {
  return own_len() > 0 ? v + size_t(comm_->rank()) * shard_ : v;  // (an empty shard: unused)
}

void Trainer::reduce_shard(float* g, float* dst) {
  const size_t P = net_->num_params();
  if (host_acc_.empty()) {  // host memory (CPU) or a communicator that takes device memory
    comm_->reduce_scatter_ordered(g, k_, P, P, shard_, dst);
    return;
  }
  float* h = host_acc_.data();
  be_.download(h, g, host_acc_.size() * 4);
  comm_->reduce_scatter_ordered(h, k_, P, P, shard_, own(h));
  be_.upload(dst, own(h), own_len() * 4);
}

void Trainer::share_shards(float* v) {
  const size_t P = net_->num_params();
  if (host_acc_.empty()) {
    comm_->allgather_shards(v, P, shard_);
    return;
  }
  float* h = host_acc_.data();
  be_.download(own(h), own(v), own_len() * 4);
  comm_->allgather_shards(h, P, shard_);
  be_.upload(v, h, P * 4);
}

void Trainer::zero_update(double lr) {
  const size_t off = size_t(comm_->rank()) * shard_, len = own_len();
  if (!overlap_) reduce_shard(slice_grads(), part_.f32());
  if (s_.partial) zero_frozen(part_.f32(), off, len);
  // The norm from the shards' sums of squares added in rank order (only clipping and the log use
  // it; it can differ from the unsharded norm in the last bits).
  const std::vector<double> sq = allgather_doubles(*comm_, {be_.sum_squares(part_.f32(), shard_)});
  double total = 0;
  for (double q : sq) total += q;
  last_norm_ = std::sqrt(total);
  if (const double c = grad_clip_factor(s_, last_norm_); c != 1.0)
    be_.scale(part_.f32(), float(c), shard_);
  if (len > 0) update_trained(net_->params() + off, part_.f32(), off, len, lr);
  share_shards(net_->params());  // every rank's updated shard, in place
}

size_t Trainer::packed(size_t flat) const {
  // The first range that ends after flat: the ranges before it are below flat, and so is its part
  // before flat.
  const auto it = range_ending_after(trained_, flat);
  const size_t i = size_t(it - trained_.begin());
  return packed_at_[i] + (it == trained_.end() || flat <= it->first ? 0 : flat - it->first);
}

template <class F>
void Trainer::for_trained(size_t off, size_t len, F&& f) const {
  auto it = range_ending_after(trained_, off);
  for (; it != trained_.end() && it->first < off + len; ++it) {
    const size_t lo = std::max(it->first, off), hi = std::min(it->second, off + len);
    f(lo, hi, packed_at_[size_t(it - trained_.begin())] + (lo - it->first) - mom_base_);
  }
}

void Trainer::update_trained(float* p, const float* g, size_t off, size_t len, double lr,
                             float* ema) {
  const bool adan = s_.optimizer == "adan";
  AdanHyper h;
  h.lr = float(lr), h.beta1 = float(s_.beta1), h.beta2 = float(s_.beta2);
  h.beta3 = float(s_.beta3), h.eps = float(s_.eps), h.weight_decay = float(s_.weight_decay);
  h.no_prox = s_.no_prox;
  const float rate = float(s_.ema_rate);
  size_t ema_done = 0;  // with ema: floats [off, off + ema_done) have their EMA (Adan: after it)
  auto ema_to = [&](size_t k) {  // EMA alone up to k: frozen floats (AdamW), all of them (Adan)
    if (k > ema_done) be_.ema(ema + ema_done, p + ema_done, k - ema_done, rate);
    ema_done = k;
  };
  for_trained(off, len, [&](size_t lo, size_t hi, size_t at) {
    const size_t k = lo - off;
    float *m = m_.f32() + at, *v = v_.f32() + at;
    if (adan) {
      be_.adan(p + k, g + k, m, d_.f32() + at, v, gp_.f32() + at, hi - lo, h, step_ + 1);
    } else if (ema) {  // one pass over memory for both (bit for bit adamw, then ema)
      ema_to(k);
      be_.adamw_ema(p + k, g + k, m, v, ema + k, hi - lo, float(lr), float(s_.beta1),
                    float(s_.beta2), float(s_.eps), float(s_.weight_decay), step_ + 1, rate);
      ema_done = hi - off;
    } else {
      be_.adamw(p + k, g + k, m, v, hi - lo, float(lr), float(s_.beta1), float(s_.beta2),
                float(s_.eps), float(s_.weight_decay), step_ + 1);
    }
  });
  if (ema) ema_to(len);
}

std::vector<std::pair<std::string, DeviceBuffer*>> Trainer::state_buffers() {
  if (s_.optimizer == "adan")
    return {{"adan.exp_avg", &m_},
            {"adan.exp_avg_sq", &v_},
            {"adan.exp_avg_diff", &d_},
            {"adan.pre_grad", &gp_}};
  return {{"adamw.exp_avg", &m_}, {"adamw.exp_avg_sq", &v_}};
}

void Trainer::stream_state(size_t i, const ByteSink* sink) {
  const size_t P = net_->num_params();
  const float* src = state_buffers()[i].second->f32();
  // Pieces of 4 MB: under ZeRO-1 rank 0 receives the other shards one piece at a time (no host
  // holds the gathered state). Each piece is unpacked into a host buffer: the trained floats
  // from the state, zeros for the frozen ones (the file holds every parameter's state).
  gather_shards(
      sharded() ? *comm_ : single_, P, sharded() ? shard_ : P, size_t(1) << 20,
      [&](size_t off, size_t n, float* scratch) -> const float* {
        const size_t at = mom_lo_ + off;
        std::fill(scratch, scratch + n, 0.f);
        for_trained(at, n, [&](size_t lo, size_t hi, size_t k) {
          be_.download(scratch + (lo - at), src + k, (hi - lo) * 4);
        });
        return scratch;
      },
      [&](const float* data, size_t n) { (*sink)(data, n * 4); });
}

void Trainer::save_state(const std::string& path, const std::map<std::string, std::string>& meta) {
  const size_t P = net_->num_params();
  std::vector<TensorInfo> infos;
  for (const auto& [name, buf] : state_buffers()) infos.push_back({name, DType::F32, {int64_t(P)}});
  save_safetensors(
      path, infos, [&](size_t i, const ByteSink& sink) { stream_state(i, &sink); }, meta);
}

uint64_t Trainer::weights_hash() {
  uint64_t h = kWeightsHashSeed;
  for (Network* n : {net_.get(), ema_.get()}) h = hash_network(*n, h);
  return h;
}

void Trainer::check_replicas() {
  if (comm_->size() == 1) return;
  const uint64_t h = weights_hash();
  std::vector<uint64_t> all(size_t(comm_->size()));
  comm_->allgather_bytes(&h, sizeof h, all.data());
  for (size_t r = 1; r < all.size(); ++r)
    UVIT_CHECK(all[r] == all[0], "at step ", step_, " the weights of rank ", r,
               " differ from rank 0's: the replicated update diverged (ranks on different "
               "builds or hardware? docs/distributed.md)");
}

std::string Trainer::save_id(const LoaderState& ls) {
  // The state, not the moment: the same weights, EMA, step and data position give the same id
  // (a resumed run's files stay byte-identical to an uninterrupted run's), two branches at one
  // step different ones. The optimizer moments are left out: under ZeRO-1 rank 0 holds a shard.
  uint64_t h = weights_hash();
  for (uint64_t v : {uint64_t(step_), ls.seed, uint64_t(ls.epoch), uint64_t(ls.offset)})
    h = (h ^ v) * 1099511628211ull;
  char id[17];
  std::snprintf(id, sizeof id, "%016llx", static_cast<unsigned long long>(h));
  return id;
}

void Trainer::write_state(const std::string& dir, const LoaderState& ls, const std::string& id) {
  fs::create_directories(dir);
  // The three files (and a snapshot's log copy) are written into DIR/.saving first and moved into
  // DIR only once all are complete (train_state last): a write that fails (a full disk) or dies
  // leaves the previous checkpoint whole. Each records the save's id, so a cut between the moves
  // is seen at any step, and finished from .saving (save_commit.hpp).
  const fs::path stage = fs::path(dir) / kSaveStage;
  // A save cut between its moves is finished first: if this one fails, DIR holds that one whole.
  finish_interrupted_save(dir);
  remove_dead_save(dir);  // a save that died before its moves (DIR holds the one before it)
  fs::create_directories(stage);
  struct Cleanup {
    fs::path p;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(p, ec);
    }
  } cleanup{stage};
  const std::map<std::string, std::string> meta = {
      {"step", std::to_string(step_count())}, {"config", config().config_name}, {kSaveIdKey, id}};
  net().save_weights((stage / "nnet.safetensors").string(), meta);
  test_hook_die(comm(), step_count(), "save");
  ema_net().save_weights((stage / "nnet_ema.safetensors").string(), meta);
  const size_t P = net().num_params();
  auto meta2 = meta;
  meta2["optimizer"] = settings().optimizer;
  meta2["loader_seed"] = std::to_string(ls.seed);
  meta2["loader_epoch"] = std::to_string(ls.epoch);
  meta2["loader_offset"] = std::to_string(ls.offset);
  meta2["num_params"] = std::to_string(P);
  // How the batch was split (information: a run resumes with any split, docs/distributed.md).
  meta2["dp_width"] = std::to_string(dp_width());
  meta2["accum"] = std::to_string(settings().accum);
  meta2["global_batch"] = std::to_string(settings().batch);
  save_state((stage / "train_state.safetensors").string(), meta2);
  // A snapshot keeps the run's log as it is now (the history of these weights), moved in with
  // them: a copy left by an earlier save into this folder never sits beside other weights.
  const bool snapshot = dir != dir_;
  const fs::path log = fs::path(dir_) / "log.jsonl";
  const bool copy_log = snapshot && fs::exists(log);
  if (copy_log) fs::copy_file(log, stage / kSnapshotLog);
  if (snapshot && !copy_log) fs::remove(fs::path(dir) / kSnapshotLog);
  {
    const io::SignalHold hold;  // a SIGINT/SIGTERM does not stop the process between the renames
    for (const char* f : kCommitOrder) {
      if (std::strcmp(f, kSnapshotLog) == 0 && !copy_log) continue;
      fs::rename(stage / f, fs::path(dir) / f);
      // Test hooks (UVIT_TEST_DIE): a death after the first move, of the run's files or a
      // snapshot's.
      if (f == kCommitOrder[0])
        test_hook_die(comm(), step_count(), snapshot ? "snaprename" : "rename");
    }
  }
  io::sync_dir(dir);
}

namespace {
// A snapshot train.keep_snapshots no longer keeps. One that cannot be removed (another user's, in
// a run folder shared by a group) stays, said once: the checkpoint that pruned it is written, and
// stopping there lost the rest of the run for a file that was only to be deleted.
void prune_snapshot(const fs::path& snap) {
  std::error_code ec;
  fs::remove_all(snap, ec);
  static std::set<std::string> said;
  if (!ec || !said.insert(snap.string()).second) return;
  log(LogLevel::Warn, cat(snap.string(), ": not removed (", ec.message(),
                          "), though train.keep_snapshots no longer keeps it; the run goes on"));
}
}  // namespace

size_t Trainer::checkpoint_bytes() {
  return (2 + state_buffers().size()) * net().num_params() * sizeof(float);
}

void Trainer::save(bool snapshot) {
  // Not the loader's state now: after a DataError it is inside the step that failed.
  const LoaderState& ls = done_;
  if (comm_->rank() == 0) {  // every rank holds the same weights: one writer
    const std::string id = save_id(ls);  // the run's files and the snapshot: one state
    saying([&] { write_state(dir_, ls, id); },  // a full disk: where the run stands, the room
           [&](const std::string& what) {
             return save_failure(dir_, step_, what, checkpoint_bytes());
           });
    if (snapshot) {
      // The run's own files are written: a failed snapshot (a full disk in ckpts/) says where the
      // run stands. Its folder goes if it is empty (it held no earlier snapshot of this step).
      const fs::path snap = fs::path(dir_) / "ckpts" / std::to_string(step_);
      // The branches as they are before this snapshot (the run's log read once); once written,
      // it is of the current branch.
      const SnapshotBranches was = snapshot_branches(dir_);
      const auto at_step = [&](const auto& s) { return s.first == step_; };
      // A snapshot of a branch the run went back from, at this step: not deleted unsaid.
      if (fs::exists(snap / "train_state.safetensors") &&
          std::any_of(was.stale.begin(), was.stale.end(), at_step))
        std::fprintf(stderr,
                     "note: replacing %s, a snapshot of a branch the run went back from (its log "
                     "rows are in %s/log_dropped.jsonl)\n",
                     snap.c_str(), dir_.c_str());
      try {
        write_state(snap.string(), ls, id);
      } catch (const std::exception& e) {
        std::error_code ec;
        fs::remove(snap, ec);
        fail("snapshot ", snap.string(), " not written (", e.what(),
             "); the run's checkpoint is at ", "step ", step_, " in ", dir_,
             ": continue with --resume");
      }
      // train.keep_snapshots counts this branch's snapshots only: one of a branch the run went
      // back from neither takes a place nor is pruned (docs/cli.md "Resume").
      auto live = was.live;
      if (std::none_of(live.begin(), live.end(), at_step)) live.emplace_back(step_, snap);
      std::sort(live.begin(), live.end());
      for (size_t i = 0; i + s_.keep_snapshots < live.size(); ++i) prune_snapshot(live[i].second);
    }
  } else if (sharded()) {  // ZeRO-1: each train_state gathers the shards
    for (int copy = 0; copy < (snapshot ? 2 : 1); ++copy)
      for (size_t i = 0; i < state_buffers().size(); ++i) stream_state(i, nullptr);
  }
  comm_->barrier();  // no rank goes on (or exits) before the checkpoint is complete
}

void Trainer::resume(const std::string& from) {
  const std::string src = from.empty() ? dir_ : from;
  // A save cut between its moves that is still there (a fork of a snapshot of a run another
  // uvit train holds) is read whole from its .saving (save_commit.hpp).
  const auto file = [](const std::string& dir, const char* f) {
    return checkpoint_file(dir, f).string();
  };
  const std::string sp = file(src, "train_state.safetensors");
  UVIT_CHECK(fs::exists(sp), src, ": nothing to resume (no train_state.safetensors)");
  // Every file is read one tensor at a time into its buffer: no whole-model host copy.
  const std::unique_ptr<TensorReader> sr = open_weights(sp);
  std::map<std::string, std::string> meta = sr->metadata();
  const std::vector<TensorInfo>& st = sr->tensors();
  auto need = [&](const char* k) {
    UVIT_CHECK(meta.count(k), sp, ": metadata lacks '", k, "'");
    return meta.at(k);
  };
  const size_t P = net_->num_params();
  UVIT_CHECK(std::stoull(need("num_params")) == P, sp, ": holds ", need("num_params"),
             " parameters, config ", cfg_.config_name, " has ", P);
  const auto bufs = state_buffers();
  bool layout = st.size() == bufs.size();
  for (size_t i = 0; layout && i < st.size(); ++i)
    layout =
        st[i].name == bufs[i].first && st[i].numel() == int64_t(P) && st[i].dtype == DType::F32;
  UVIT_CHECK(layout, sp, ": holds no ", s_.optimizer, " state for ", P, " parameters (tensors ",
             st.empty() ? std::string("none") : st[0].name, "...; config ", cfg_.config_name,
             " trains with optimizer.name ", s_.optimizer, ")");
  const long step = std::stol(need("step"));
  // The weights belong with train_state when their files record its step and its save_id; a
  // train_state without one (written before save ids) by the step alone.
  const std::string id = save_id_in(meta);
  auto belong = [&](const FileMetadata& a, const FileMetadata& b) { return same_save(meta, a, b); };
  // train_state is written last: a save interrupted before it left newer weights beside the
  // previous complete checkpoint, whose weights its snapshot in ckpts/STEP still holds (if it is
  // of the branch the run's log holds: one of a branch left pairs with another log).
  // Each weights file is opened once, and its metadata checked and its tensors loaded through that
  // one reader: a run another uvit train holds may re-save the snapshot a fork reads (files renamed
  // over these paths) between the check and the load, and a second open would load the other
  // save's weights beside this train_state (docs/cli.md "Resume").
  std::string wdir = src;
  std::unique_ptr<TensorReader> r1 = open_weights(file(wdir, "nnet.safetensors")),
                                r2 = open_weights(file(wdir, "nnet_ema.safetensors"));
  FileMetadata m1 = r1->metadata(), m2 = r2->metadata();
  UVIT_CHECK(!m1.count(kQuantKey) && !m2.count(kQuantKey), wdir,
             ": the weights are quantised; training needs the fp32 weights");
  const std::string snap = src + "/ckpts/" + need("step");
  if (!belong(m1, m2) && fs::exists(file(snap, "train_state.safetensors")) &&
      snapshot_is_live(src, snap)) {
    std::unique_ptr<TensorReader> s1 = open_weights(file(snap, "nnet.safetensors")),
                                  s2 = open_weights(file(snap, "nnet_ema.safetensors"));
    if (belong(s1->metadata(), s2->metadata())) {
      wdir = snap, m1 = s1->metadata(), m2 = s2->metadata();
      r1 = std::move(s1), r2 = std::move(s2);
      if (comm_->rank() == 0)
        std::fprintf(stderr,
                     "note: %s holds an interrupted save; resuming from the complete checkpoint "
                     "of step %s (%s)\n",
                     src.c_str(), need("step").c_str(), snap.c_str());
    }
  }
  // Both refusals name what resumes instead, as resume.cpp's for a missing train_state does (read
  // once, only on a refusal: it reads the run's log); `none` when there is no snapshot to name.
  auto hint = [&](const std::string& prefix, const std::string& none) {
    const std::string h = newest_snapshot_hint(src);
    return h.empty() ? none : prefix + h;
  };
  UVIT_CHECK(m1["step"] == need("step") && m2["step"] == need("step"), src,
             ": nnet.safetensors, nnet_ema.safetensors and train_state.safetensors are from "
             "different steps (an interrupted save?)",
             hint("; ", ""));
  // The same step, two saves: a save cut between its moves whose remaining files are gone (its
  // .saving removed), beside a checkpoint of another branch at that step.
  UVIT_CHECK(belong(m1, m2), src,
             ": nnet.safetensors, nnet_ema.safetensors and train_state.safetensors are from "
             "different saves of step ",
             step, " (save_id ", save_id_in(m1).empty() ? "none" : save_id_in(m1), ", ",
             save_id_in(m2).empty() ? "none" : save_id_in(m2), ", ", id.empty() ? "none" : id,
             ": a save cut between its moves, its other files gone); resuming would mix two "
             "trainings: ",
             hint("", "resume another checkpoint of the run"));
  io::pause_for_test("UVIT_TEST_RESUME_PAUSE");
  net_->load_reader(*r1);
  ema_->load_reader(*r2);
  // This rank reads the trained floats of its part of the state (under ZeRO-1 its shard) into
  // the packed buffers; the frozen parameters' state in the file is not read. Host memory (the
  // CPU) in place, device memory through a host buffer of 4 MB.
  const size_t len = sharded() ? std::min(shard_, P - mom_lo_) : P;
  const bool host = ParamStage::host_memory(be_);
  std::vector<float> chunk(host ? 0 : std::min<size_t>(std::max<size_t>(moments_n_, 1), 1 << 20));
  for (size_t i = 0; i < bufs.size(); ++i) {
    float* dst = bufs[i].second->f32();
    for_trained(mom_lo_, len, [&](size_t lo, size_t hi, size_t at) {
      for (size_t k = 0; k < hi - lo; k += host ? hi - lo : chunk.size()) {
        const size_t n = host ? hi - lo : std::min(chunk.size(), hi - lo - k);
        sr->read_part(i, (lo + k) * 4, n * 4, host ? dst + at : chunk.data());
        if (!host) be_.upload(dst + at + k, chunk.data(), n * 4);
      }
    });
  }
  step_ = step;
  resumed_metadata_ = meta;
  if (meta.count("dp_width") && comm_->rank() == 0 &&
      (std::stoi(meta["dp_width"]) != V_ || std::stoi(meta["accum"]) != s_.accum))
    std::fprintf(stderr,
                 "note: the run was split into %s slices x %s micro-batches, now %d x %d: same "
                 "data and noise, gradients added in another order (last-bit differences from "
                 "an uninterrupted run; set train.dp_virtual to keep the split)\n",
                 meta["dp_width"].c_str(), meta["accum"].c_str(), V_, s_.accum);
  loader_->set_state({std::stoull(need("loader_seed")), std::stoll(need("loader_epoch")),
                      std::stoll(need("loader_offset"))});
  done_ = loader_->get_state();
}

}  // namespace uvit
