// The parameter plumbing every Network shares, and the registry lookups.
#include "uvit/network.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>

#include "io/weights_views.hpp"
#include "models/param_stage.hpp"
#include "uvit/config.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace uvit {

Network::Network(NetSpec spec, ParamTable table, Backend& be)
    : spec_(std::move(spec)), table_(std::move(table)), be_(be) {
  params_ = be_.alloc(table_.total());
  act_params_ = params_;
  if (be_.act_bytes() != sizeof(float)) {
    try {
      act_params_ = static_cast<float*>(be_.alloc_bytes(table_.total() * be_.act_bytes()));
    } catch (...) {
      be_.free_bytes(params_);
      throw;
    }
  }
}

Network::~Network() {
  if (grads_ && !zero_grads_) be_.free_bytes(grads_);
  if (act_params_ != params_) be_.free_bytes(act_params_);
  be_.free_bytes(params_);
}

void Network::ensure_params() const {
  if (params_set_) return;
  be_.fill(params_, 0.f, table_.total());
  params_set_ = true;
}

const float* Network::act_params() {
  ensure_params();
  // Also in fp32 (act_params_ == params_: nothing to convert): the backend learns that the weights
  // were written, and drops what it derived from them (the CPU's kept blocked weights).
  if (act_stale_) be_.params_to_act(params_, act_params_, table_.total());
  act_stale_ = false;
  return act_params_;
}

float* Network::grads() {
  UVIT_CHECK(quantized_from_.empty(), quantized_from_,
             ": quantised weights are for inference (predict, sample, eval, serve); training "
             "needs the fp32 weights");
  if (!grads_) grads_ = be_.alloc(table_.total());
  if (!grads_set_) be_.fill(grads_, 0.f, table_.total());
  grads_set_ = true;
  return grads_;
}

void Network::reserve(int B, bool train, bool packed) {
  if (train && !grads_) grads_ = be_.alloc(table_.total());  // zeroed by grads()
  if (packed)
    plan_packed_batch(B, train);
  else
    plan_batch(B, train);
}

// A network that does not pack refuses any sizes, in set_valid_sizes' words.
void Network::plan_packed_batch(int, bool) { set_valid_sizes({{0, 0}}); }

void Network::zero_grad() {
  float* g = grads();
  if (zero_grads_)
    zero_grads_();
  else
    be_.fill(g, 0.f, table_.total());
}

void Network::use_grads(float* g, std::function<void()> zero) {
  if (grads_ && !zero_grads_) be_.free_bytes(grads_);
  grads_ = g;
  grads_set_ = true;  // zero, the caller says
  zero_grads_ = std::move(zero);
}

void Network::grads_ready(const std::string& prefix) const {
  if (!grads_ready_) return;
  size_t lo = 0, hi = 0;
  bool seen = false, ended = false;
  for (const ParamEntry& e : table_.entries()) {
    const bool in = e.name.compare(0, prefix.size(), prefix) == 0;
    if (in) {
      UVIT_CHECK(!ended, "network ", spec_.name, ": the tensors named ", prefix,
                 "* are not contiguous in its table (cannot announce their gradient)");
      if (!seen) lo = e.offset;
      hi = e.offset + e.numel;
    }
    ended = ended || (seen && !in);
    seen = seen || in;
  }
  UVIT_CHECK(seen, "network ", spec_.name, ": no tensor is named ", prefix, "*");
  grads_ready(lo, hi);
}

void Network::write_params(const ParamFill& fill) {
  act_stale_ = true;
  ParamStage stage(be_, params_);
  const std::vector<ParamEntry>& es = table_.entries();
  for (size_t i = 0; i < es.size(); ++i)
    stage.write(es[i], [&](float* p) {
      std::fill(p, p + es[i].numel, 0.f);
      fill(i, es[i], p);
    });
  params_set_ = true;
  quant_.reset();
  quantized_from_.clear();
}

void Network::load(const NamedArrays& sd, const std::string& what) {
  for (const auto& [name, a] : sd)
    UVIT_CHECK(a.dtype != DType::I8 && a.dtype != DType::U8, what, ": tensor '", name, "' is ",
               dtype_name(a.dtype),
               ": quantised weights are for inference (predict, sample, eval, serve); training "
               "needs the fp32 weights");
  ArrayReader r(sd, what);  // the file loader's path (load_reader), from memory
  table_.check(r.tensors(), what);
  act_stale_ = true;  // before the first write: a load that fails half-way leaves them stale
  ParamStage stage(be_, params_);
  read_params(r, table_, stage);
  params_set_ = true;
  quant_.reset();
  quantized_from_.clear();
  check_loaded();
}

namespace {

// Called in the handler of a strict check's error e on r's tensors: rethrows e, or throws it as
// OtherPresetWeights naming the preset whose weights r holds (as uvit info names it) when one can
// be told and it is not this network (a quantised file's recorded config is not checked against
// its tensors).
[[noreturn]] void fail_naming_preset(const Error& e, const TensorReader& r,
                                     const ParamTable& mine) {
  const std::string p = weights_preset(r.tensors(), r.metadata());
  if (p.empty()) throw;
  const bool quantised = r.metadata().count(kQuantKey) > 0;
  if (quantised) {
    std::vector<TensorInfo> own;
    for (const ParamEntry& x : mine.entries()) own.push_back({x.name, DType::F32, x.shape});
    bool mine_too = false;  // this network's own config: the error is about the file itself
    try {
      network_param_table(load_config(p)).check(own, p);
      mine_too = true;
    } catch (const Error&) {  // another network (or a preset this build cannot describe)
    }
    if (mine_too) throw;
  }
  throw OtherPresetWeights(e.what(), p,
                           quantised ? "recorded when quantised" : "every tensor's name and shape");
}

// The one wording of OtherPresetWeights' message; `setting` gives the config `preset`.
std::string other_preset_message(const std::string& load_error, const std::string& preset,
                                 const std::string& evidence, const std::string& setting) {
  return cat(load_error, "; the file holds preset ", preset, "'s weights (", evidence,
             "): ", setting, " takes it");
}

}  // namespace

OtherPresetWeights::OtherPresetWeights(std::string load_error_, std::string preset_,
                                       std::string evidence_)
    : Error(other_preset_message(load_error_, preset_, evidence_, "--config " + preset_)),
      load_error(std::move(load_error_)),
      preset(std::move(preset_)),
      evidence(std::move(evidence_)) {}

std::string OtherPresetWeights::said_as(const std::string& setting) const {
  return other_preset_message(load_error, preset, evidence, setting);
}

// Each tensor is read from the file straight into its place (CPU) or through the stage.
void Network::load_file(const std::string& path) { load_reader(*open_weights(path)); }

void Network::load_reader(TensorReader& r) {
  const std::string& path = r.path();
  act_stale_ = true;
  ParamStage stage(be_, params_);
  quant_.reset();
  quantized_from_.clear();
  QuantFormat f;
  if (quant_format_of(r.metadata(), path, &f)) {
    try {
      load_quantized(r, f, stage);
    } catch (const Error& e) {  // its checks fail before a read when it is another network's
      fail_naming_preset(e, r, table_);
    }
  } else {
    try {
      table_.check(r.tensors(), path);
    } catch (const Error& e) {  // another network's file: say whose, as uvit info would
      fail_naming_preset(e, r, table_);
    }
    read_params(r, table_, stage);
  }
  params_set_ = true;
  if (quant_ && !stage.in_place()) {  // dequantised once: the GEMMs read act weights on the device
    for (const QuantTensor& t : quant_->tensors)
      stage.write(table_.at(t.name), [&](float* p) { t.dequantize(f, 0, t.in, p); });
    quant_.reset();
  }
  check_loaded();
}

// Quantised GEMM weights (I8 / packed U8 with an F32 NAME_scale) are checked against the table as
// the fp32 tensors they stand for; every error names the tensor.
void Network::load_quantized(TensorReader& r, const QuantFormat& f, ParamStage& stage) {
  const std::string& path = r.path();
  const std::vector<TensorInfo>& ts = r.tensors();
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < ts.size(); ++i) index[ts[i].name] = i;
  const DType want = f.kind == QuantKind::Int8 ? DType::I8 : DType::U8;
  std::vector<TensorInfo> as_fp32;  // what the strict table check sees
  std::vector<size_t> scale_of(ts.size(), SIZE_MAX);
  std::vector<bool> is_scale(ts.size(), false);
  for (size_t i = 0; i < ts.size(); ++i) {
    const TensorInfo& t = ts[i];
    const bool integer = t.dtype == DType::I8 || t.dtype == DType::U8;
    const ParamEntry* e = table_.find(t.name);
    if (!integer || !e) continue;
    UVIT_CHECK(e->gemm, path, ": tensor '", t.name, "' is ", dtype_name(t.dtype),
               " but is not a linear weight of this network (only those are quantised)");
    UVIT_CHECK(t.dtype == want, path, ": tensor '", t.name, "' is ", dtype_name(t.dtype), ", an ",
               f.name(), " file stores quantised weights as ", dtype_name(want));
    const int64_t out = e->shape[0], in = int64_t(e->numel) / out;
    UVIT_CHECK(f.kind == QuantKind::Int8 || in % f.group == 0, path, ": tensor '", t.name, "' has ",
               in, " inputs per row, not a multiple of the int4 group ", f.group);
    const std::vector<int64_t> qshape =
        f.kind == QuantKind::Int8 ? e->shape : std::vector<int64_t>{out, in / 2};
    const std::vector<int64_t> sshape = f.kind == QuantKind::Int8
                                            ? std::vector<int64_t>{out}
                                            : std::vector<int64_t>{out, in / f.group};
    UVIT_CHECK(t.shape == qshape, path, ": tensor '", t.name, "' has shape ", shape_str(t.shape),
               ", ", f.name(), " of ", shape_str(e->shape), " needs ", shape_str(qshape));
    const std::string sname = t.name + kScaleSuffix;
    auto it = index.find(sname);
    UVIT_CHECK(it != index.end(), path, ": tensor '", t.name, "' is quantised but its scale '",
               sname, "' is missing");
    const TensorInfo& s = ts[it->second];
    UVIT_CHECK(s.dtype == DType::F32, path, ": tensor '", sname, "' is ", dtype_name(s.dtype),
               ", scales are F32");
    UVIT_CHECK(s.shape == sshape, path, ": tensor '", sname, "' has shape ", shape_str(s.shape),
               ", expected ", shape_str(sshape));
    scale_of[i] = it->second;
    is_scale[it->second] = true;
  }
  for (size_t i = 0; i < ts.size(); ++i) {
    if (is_scale[i]) continue;
    TensorInfo t = ts[i];
    if (scale_of[i] != SIZE_MAX) t = {t.name, DType::F32, table_.at(t.name).shape};
    as_fp32.push_back(std::move(t));
  }
  table_.check(as_fp32, path);

  auto q = std::make_unique<QuantWeights>();
  q->format = f;
  q->path = path;
  for (size_t i = 0; i < ts.size(); ++i) {
    if (is_scale[i]) continue;
    const ParamEntry& e = table_.at(ts[i].name);
    if (scale_of[i] == SIZE_MAX) {
      stage.write(e, [&](float* p) { r.read_f32(i, p); });
      continue;
    }
    QuantTensor t;
    t.name = e.name;
    t.offset = e.offset;
    t.out = int(e.shape[0]);
    t.in = int(e.numel / size_t(t.out));
    t.q.resize(ts[i].nbytes());
    r.read(i, t.q.data());
    t.scale.resize(size_t(ts[scale_of[i]].numel()));
    r.read(scale_of[i], t.scale.data());
    for (float v : t.scale)
      UVIT_CHECK(std::isfinite(v) && v >= 0.f, path, ": tensor '", ts[scale_of[i]].name,
                 "' holds a negative or non-finite scale ", v);
    q->tensors.push_back(std::move(t));
  }
  std::sort(q->tensors.begin(), q->tensors.end(),
            [](const QuantTensor& a, const QuantTensor& b) { return a.offset < b.offset; });
  quant_ = std::move(q);
  quantized_from_ = cat(path, " (", f.name(), ")");
}

const float* Network::host_values(const ParamEntry& e, ParamStage& stage) const {
  if (quant_) {
    const auto& ts = quant_->tensors;  // sorted by offset
    auto it = std::lower_bound(ts.begin(), ts.end(), e.offset,
                               [](const QuantTensor& t, size_t off) { return t.offset < off; });
    if (it != ts.end() && it->offset == e.offset) {
      float* p = stage.buffer(e.numel);
      it->dequantize(quant_->format, 0, it->in, p);
      return p;
    }
  }
  return stage.read(e);
}

NamedArrays Network::export_weights(DType dtype) const {
  ensure_params();
  ParamStage stage(be_, params_);
  NamedArrays out;
  out.reserve(table_.entries().size());
  for (const ParamEntry& e : table_.entries()) {
    Array a = Array::from_f32(e.shape, host_values(e, stage));
    if (dtype != DType::F32) a = a.converted(dtype);
    out.emplace_back(e.name, std::move(a));
  }
  return out;
}

void Network::save_weights(const std::string& path,
                           const std::map<std::string, std::string>& metadata) const {
  ensure_params();
  ParamStage stage(be_, params_);
  std::vector<TensorInfo> infos;
  for (const ParamEntry& e : table_.entries()) infos.push_back({e.name, DType::F32, e.shape});
  save_safetensors(
      path, infos,
      [&](size_t i, const ByteSink& sink) {
        const ParamEntry& e = table_.entries()[i];
        sink(host_values(e, stage), e.numel * sizeof(float));
      },
      metadata);
}

void Network::check_inputs(const int32_t* y, const float* context, int B) const {
  UVIT_CHECK(B > 0, "forward: batch size must be positive, got ", B);
  UVIT_CHECK(!spec_.text_conditional() || context, spec_.name, " forward needs a context");
  UVIT_CHECK(spec_.text_conditional() || spec_.class_conditional() == (y != nullptr),
             spec_.class_conditional() ? "a class-conditional network needs class labels y"
                                       : "an unconditional network takes no class labels");
}

void Network::set_skip_cache(int every) {
  UVIT_CHECK(every <= 1, "--skip-cache: network ", spec_.name,
             " has no Skip-Cache (it needs the long skips of skip_dit)");
}

void Network::set_train_pass(int pass, uint64_t, uint64_t) {
  UVIT_CHECK(pass == 0, "network ", spec_.name, " has a single training pass, not pass ", pass);
}

void Network::set_valid_sizes(const std::vector<std::array<int, 2>>& sizes) {
  UVIT_CHECK(sizes.empty(), "network ", spec_.name,
             " takes no variable-size batches (only fitv2 and fitv1 pack them; docs/fit.md)");
}

std::unique_ptr<Network> make_network(const Config& cfg, Backend& be) {
  return network_family(cfg.spec.name).create(cfg.json, be);
}

ParamTable network_param_table(const Config& cfg) {
  return network_family(cfg.spec.name).table(cfg.json.at("nnet"));
}

double network_forward_flops(const Config& cfg) {
  return network_family(cfg.spec.name).flops(cfg.json.at("nnet"));
}

}  // namespace uvit
