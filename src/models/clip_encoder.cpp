// The CLIP towers' shared layout, checkpoint matching and transformer stack (clip_encoder.hpp).
#include "models/clip_encoder.hpp"

#include <algorithm>
#include <cmath>

#include "models/param_stage.hpp"
#include "uvit/error.hpp"

namespace uvit::clip {

void require_fp32(const Backend& be, const char* tower) {
  UVIT_CHECK(be.act_bytes() == sizeof(float), tower,
             ": the model needs fp32 activations (precision fp32 or tf32), got a ", be.precision(),
             " ", be.name(), " backend");
}

const nlohmann::json& ConfigFields::section(const nlohmann::json& j0, const char* key,
                                            const std::string& what) {
  UVIT_CHECK(j0.is_object(), what, ": expected a JSON object");
  const nlohmann::json& j = j0.contains(key) ? j0[key] : j0;
  UVIT_CHECK(j.is_object(), what, ": ", key, " is not an object");
  return j;
}

void ConfigFields::only(std::initializer_list<const char*> known, const char* kind) const {
  for (const auto& [k, v] : j.items())
    UVIT_CHECK(std::find(known.begin(), known.end(), k) != known.end(), what, ": unknown ", kind,
               " field '", k, "'");
}

void ConfigFields::get(const char* k, int& v) const {
  if (!j.contains(k)) return;
  UVIT_CHECK(j[k].is_number_integer(), what, ": ", k, " must be an integer");
  v = j[k].get<int>();
}

void ConfigFields::get(const char* k, double& v) const {
  if (!j.contains(k)) return;
  UVIT_CHECK(j[k].is_number(), what, ": ", k, " must be a number");
  v = j[k].get<double>();
}

void ConfigFields::get(const char* k, std::string& v) const {
  if (!j.contains(k)) return;
  UVIT_CHECK(j[k].is_string(), what, ": ", k, " must be a string");
  v = j[k].get<std::string>();
}

size_t Layout::take(const std::string& name, std::vector<int64_t> shape, bool optional) {
  size_t n = 1;
  for (int64_t d : shape) n *= size_t(d);
  const size_t o = total_;
  total_ += n;
  if (!name.empty()) slots_[name] = {o, std::move(shape), optional};
  return o;
}

void Layout::alias(const std::string& name, size_t offset, std::vector<int64_t> shape) {
  slots_[name] = {offset, std::move(shape), false};
}

const Slot* Layout::match(const std::string& key, const std::vector<int64_t>& shape,
                          const std::string& what, int layers, std::string* name) const {
  // The tower's name may follow a wrapper prefix ("transformer.", "model.", a CLIPModel's none).
  std::string n;
  const size_t p = key.rfind(tower_);
  if (p != std::string::npos && (p == 0 || key[p - 1] == '.')) {
    n = key.substr(p);
    if (n == tower_ + "embeddings.position_ids") return nullptr;  // a buffer, not a weight
  } else {
    for (const std::string& t : top_)
      if (key == t ||
          (key.size() > t.size() && key.ends_with(t) && key[key.size() - t.size() - 1] == '.'))
        n = t;
    if (n.empty()) return nullptr;
  }
  auto it = slots_.find(n);
  UVIT_CHECK(it != slots_.end(), what, ": unexpected ", kind_, " tensor ", key,
             " (does the config match? ", layers, " layers)");
  UVIT_CHECK(shape == it->second.shape, what, ": ", key, " has shape ", shape_str(shape),
             ", expected ", shape_str(it->second.shape));
  *name = n;
  return &it->second;
}

void Layout::check_complete(const std::map<std::string, bool>& done,
                            const std::string& what) const {
  for (const auto& [name, slot] : slots_) {
    auto it = done.find(name);
    UVIT_CHECK(slot.optional || (it != done.end() && it->second), what, ": missing ", kind_,
               " tensor ", name);
  }
}

std::vector<LayerOffsets> add_layers(Layout& lay, const std::string& prefix, int n, int64_t H,
                                     int64_t I) {
  std::vector<LayerOffsets> out;
  for (int l = 0; l < n; ++l) {
    const std::string p = cat(prefix, l, ".");
    LayerOffsets L;
    L.ln1_w = lay.take(p + "layer_norm1.weight", {H});
    L.ln1_b = lay.take(p + "layer_norm1.bias", {H});
    L.qkv_w = lay.take("", {3 * H, H});
    L.qkv_b = lay.take("", {3 * H});
    const char* qkv[3] = {"q_proj", "k_proj", "v_proj"};
    for (int k = 0; k < 3; ++k) {
      lay.alias(p + "self_attn." + qkv[k] + ".weight", L.qkv_w + size_t(k * H * H), {H, H});
      lay.alias(p + "self_attn." + qkv[k] + ".bias", L.qkv_b + size_t(k * H), {H});
    }
    L.out_w = lay.take(p + "self_attn.out_proj.weight", {H, H});
    L.out_b = lay.take(p + "self_attn.out_proj.bias", {H});
    L.ln2_w = lay.take(p + "layer_norm2.weight", {H});
    L.ln2_b = lay.take(p + "layer_norm2.bias", {H});
    L.fc1_w = lay.take(p + "mlp.fc1.weight", {I, H});
    L.fc1_b = lay.take(p + "mlp.fc1.bias", {I});
    L.fc2_w = lay.take(p + "mlp.fc2.weight", {H, I});
    L.fc2_b = lay.take(p + "mlp.fc2.bias", {H});
    out.push_back(L);
  }
  return out;
}

size_t stack_scratch_floats(const StackDims& d, size_t M) {
  return M * size_t(5 * d.hidden + d.intermediate);
}

void stack_forward(Backend& be, const float* P, const std::vector<LayerOffsets>& layers,
                   const StackDims& d, float* x, float* scratch, int B, int L) {
  const int H = d.hidden, I = d.intermediate, M = B * L, Dh = H / d.heads;
  const size_t nx = size_t(M) * H, nf = size_t(M) * I;
  float *h = scratch, *att = h + nx, *qkv = att + nx, *f = qkv + 3 * nx;
  const float scale = 1.f / std::sqrt(float(Dh));
  for (const LayerOffsets& Ly : layers) {
    be.layernorm_fwd(x, P + Ly.ln1_w, P + Ly.ln1_b, h, nullptr, nullptr, M, H, d.eps);
    be.gemm(false, true, M, 3 * H, H, 1.f, h, H, P + Ly.qkv_w, H, 0.f, qkv, 3 * H);
    be.add_bias(qkv, P + Ly.qkv_b, M, 3 * H);
    if (d.causal)
      be.causal_attention_fwd(qkv, att, B, L, d.heads, Dh, scale);
    else
      be.attention_fwd(qkv, att, nullptr, B, L, d.heads, Dh, scale);
    be.gemm(false, true, M, H, H, 1.f, att, H, P + Ly.out_w, H, 1.f, x, H);  // x += proj
    be.add_bias(x, P + Ly.out_b, M, H);
    be.layernorm_fwd(x, P + Ly.ln2_w, P + Ly.ln2_b, h, nullptr, nullptr, M, H, d.eps);
    be.gemm(false, true, M, I, H, 1.f, h, H, P + Ly.fc1_w, H, 0.f, f, I);
    be.add_bias(f, P + Ly.fc1_b, M, I);
    if (!d.quick_gelu) {
      be.gelu_fwd(f, f, nf);
    } else {  // quick_gelu: x * sigmoid(1.702 x) = silu(1.702 x) / 1.702
      be.scale(f, 1.702f, nf);
      be.silu_fwd(f, f, nf);
      be.scale(f, 1.f / 1.702f, nf);
    }
    be.gemm(false, true, M, H, I, 1.f, f, I, P + Ly.fc2_w, I, 1.f, x, H);  // x += mlp
    be.add_bias(x, P + Ly.fc2_b, M, H);
  }
}

std::map<std::string, bool> load_into(Backend& be, float* params, const Layout& lay,
                                      TensorReader& r, const std::string& what, int layers) {
  std::map<std::string, bool> done;
  std::vector<std::pair<size_t, const Slot*>> reads;  // (tensor of r, its slot)
  for (size_t i = 0; i < r.tensors().size(); ++i) {
    const TensorInfo& t = r.tensors()[i];
    std::string name;
    const Slot* s = lay.match(t.name, t.shape, what, layers, &name);
    if (!s) continue;
    UVIT_CHECK(!done[name], what, ": tensor ", name, " appears twice");
    UVIT_CHECK(t.dtype == DType::F32 || t.dtype == DType::F16 || t.dtype == DType::BF16 ||
                   t.dtype == DType::F64,
               what, ": ", t.name, " has dtype ", dtype_name(t.dtype), ", expected a float type");
    done[name] = true;
    reads.emplace_back(i, s);
  }
  lay.check_complete(done, what);
  ParamStage stage(be, params);
  for (const auto& [i, s] : reads)
    stage.write(s->offset, size_t(r.tensors()[i].numel()),
                [&, i = i](float* p) { r.read_f32(i, p); });
  return done;
}

}  // namespace uvit::clip
