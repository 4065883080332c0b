// The ST-VAE's forward passes for one-frame clips (docs/stvae.md): NCHW fp32 through the Backend,
// the causal 3-D convolutions folded to 2-D ones at load.
#include "models/stvae.hpp"

#include <algorithm>

#include "models/pooled_tensor.hpp"
#include "uvit/autoencoder.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace uvit {

struct Stvae::Pool : BufferPool {};
struct Stvae::Tensor : PooledTensor {};

namespace {

constexpr int kGroups = 32;
constexpr float kNormEps = 1e-6f;

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t v : shape) n *= v;
  return n;
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

std::vector<float> fold_causal_conv3d(const Array& w) {
  UVIT_CHECK(w.shape.size() == 5, "fold_causal_conv3d: weight ", shape_str(w.shape),
             " is not [O, I, kt, kh, kw]");
  const std::vector<float> v = w.to_f32();
  const int64_t oi = w.shape[0] * w.shape[1], kt = w.shape[2], k2 = w.shape[3] * w.shape[4];
  std::vector<float> out(size_t(oi * k2));
  for (int64_t a = 0; a < oi; ++a)
    for (int64_t s = 0; s < k2; ++s) {
      double sum = 0;
      for (int64_t t = 0; t < kt; ++t) sum += v[size_t((a * kt + t) * k2 + s)];
      out[size_t(a * k2 + s)] = float(sum);
    }
  return out;
}

Stvae::Stvae(const StvaeConfig& cfg, NamedArrays weights, const std::string& what,
             const std::string& device, const std::string& precision)
    : Stvae(cfg, std::move(weights), what, make_encoder_backend(device, precision)) {}

Stvae::Stvae(const StvaeConfig& cfg, NamedArrays weights, const std::string& what,
             std::shared_ptr<Backend> be)
    : cfg_(cfg), skipped_(keep_autoencoder_tensors(weights)), be_(std::move(be)) {
  const auto expected = stvae_param_shapes(cfg);
  check_weight_shapes(weights, expected, what, "lavin_stvae");
  std::map<std::string, Array*> given;
  for (auto& [name, a] : weights) given[name] = &a;
  // Where each official tensor goes: its 2-D name and an offset in it. A spatial norm's conv_y
  // and conv_b become one 1x1 conv "yb" (scale rows, then shift rows) whose scale bias is lowered
  // by 1, as Backend::modulate_fwd multiplies by 1 + scale.
  struct Slot {
    std::string name;
    size_t at = 0;
  };
  std::vector<Slot> slots;
  std::vector<std::string> order;  // the 2-D names, in the order of their memory
  for (const auto& [name, shape] : expected) {
    std::vector<int64_t> s2 = shape;
    if (s2.size() == 5) s2.erase(s2.begin() + 2);  // [O, I, kt, kh, kw] -> [O, I, kh, kw]
    Slot slot{name, 0};
    const std::string ys = ".conv_y.conv.", bs = ".conv_b.conv.";  // same length
    const size_t y = name.find(ys), b = name.find(bs), at = std::min(y, b);
    if (at != std::string::npos)
      slot.name = name.substr(0, at) + ".yb." + name.substr(at + ys.size());
    if (b != std::string::npos) {  // conv_b after conv_y: its rows follow
      std::vector<int64_t>& d = shapes_.at(slot.name);
      slot.at = size_t(numel(d));
      d[0] *= 2;
    } else {
      shapes_[slot.name] = s2;
      order.push_back(slot.name);
    }
    slots.push_back(slot);
  }
  // One backend allocation holds every weight, uploaded and freed tensor by tensor.
  size_t total = 0;
  for (const auto& n : order) total += size_t(numel(shapes_.at(n)));
  float* base = be_->alloc(total);
  params_ = std::shared_ptr<float>(base, [be = be_](float* q) { be->free_bytes(q); });
  pool_ = std::make_shared<Pool>();
  pool_->be = be_.get();  // be_ outlives it: declared before pool_, destroyed after
  std::map<std::string, float*> dst;
  for (const auto& n : order) {
    ptr_[n] = dst[n] = base;
    base += numel(shapes_.at(n));
  }
  for (size_t i = 0; i < expected.size(); ++i) {
    const auto& [name, shape] = expected[i];
    Array& a = *given.at(name);
    std::vector<float> v = shape.size() == 5 ? fold_causal_conv3d(a) : a.to_f32();
    std::vector<uint8_t>().swap(a.data);
    if (name.find(".conv_y.conv.") != std::string::npos && ends_with(name, ".bias"))
      for (float& x : v) x -= 1.f;
    be_->upload(dst.at(slots[i].name) + slots[i].at, v.data(), v.size() * sizeof(float));
  }
}

Stvae Stvae::load(const std::string& path, const StvaeConfig& cfg, const std::string& device,
                  const std::string& precision) {
  auto be = make_encoder_backend(device, precision);  // a missing device fails before the load
  return Stvae(cfg, load_weights(path), path, std::move(be));
}

const float* Stvae::p(const std::string& name) const {
  auto it = ptr_.find(name);
  UVIT_CHECK(it != ptr_.end(), "stvae: no parameter '", name, "'");  // a bug, not bad input
  return it->second;
}

void Stvae::conv(const std::string& name, const Tensor& x, Tensor& y, int stride, int pad_lt,
                 int pad_rb) const {
  const auto& ws = shapes_.at(name + ".weight");
  Conv2dShape s;
  s.B = x.B, s.Cin = x.C, s.H = x.H, s.W = x.W, s.Cout = int(ws[0]);
  s.kh = int(ws[2]), s.kw = int(ws[3]), s.sh = s.sw = stride;
  s.pt = s.pl = pad_lt, s.pb = s.pr = pad_rb;
  y.resize(x.B, s.Cout, s.out_h(), s.out_w());
  be_->conv2d(s, x.d, p(name + ".weight"), p(name + ".bias"), y.d);
}

// GroupNorm(32, eps 1e-6), or with the decoder's latents `zs` the spatial norm
// GroupNorm(x) * conv_y(z') + conv_b(z'), z' = z upsampled (nearest) to x's size; swish after.
void Stvae::norm(const std::string& n, const Tensor& x, Tensor& y, const std::vector<Tensor>* zs,
                 bool swish) const {
  y.resize(x.B, x.C, x.H, x.W);
  if (!zs) {
    be_->group_norm(x.d, p(n + ".weight"), p(n + ".bias"), y.d, x.B, x.C, int(x.plane()), kGroups,
                    kNormEps, swish);
    return;
  }
  be_->group_norm(x.d, p(n + ".norm_layer.weight"), p(n + ".norm_layer.bias"), y.d, x.B, x.C,
                  int(x.plane()), kGroups, kNormEps, false);
  const Tensor* z = nullptr;
  for (const Tensor& t : *zs)
    if (t.H == x.H && t.W == x.W) z = &t;
  UVIT_CHECK(z, "stvae: no latent at ", x.H, "x", x.W);  // a bug, not bad input
  Tensor yb;
  conv(n + ".yb", *z, yb, 1, 0, 0);
  const int hw = int(x.plane());
  for (int b = 0; b < x.B; ++b) {  // per image: C rows of HW, scale rows then shift rows in yb
    float* yi = y.d + size_t(b) * x.C * hw;
    const float* s = yb.d + size_t(b) * 2 * x.C * hw;
    be_->modulate_fwd(yi, s + size_t(x.C) * hw, s, hw, yi, x.C, 1, hw);
  }
  if (swish) be_->silu_fwd(y.d, y.d, y.size());
}

// x = shortcut(x) + conv2(swish(norm2(conv1(swish(norm1(x)))))); no time embedding (temb 0).
void Stvae::resblock(const std::string& n, Tensor& x, const std::vector<Tensor>* zs) const {
  Tensor a, h;
  norm(n + ".norm1", x, a, zs, true);
  conv(n + ".conv1.conv", a, h, 1, 1, 1);
  norm(n + ".norm2", h, a, zs, true);
  conv(n + ".conv2.conv", a, h, 1, 1, 1);
  if (shapes_.count(n + ".conv_shortcut.weight")) {
    conv(n + ".conv_shortcut", x, a, 1, 0, 0);
    x = std::move(a);
  }
  be_->axpy(x.d, h.d, 1.f, x.size());
}

Stvae::Tensor Stvae::run_encoder(Tensor x) const {
  const int L = cfg_.levels();
  Tensor h;
  conv("encoder.conv_in.conv", x, h, 1, 1, 1);
  for (int i = 0; i < L; ++i) {
    for (int j = 0; j < cfg_.layers_per_block; ++j)
      resblock(cat("encoder.down_blocks.", i, ".resnets.", j), h, nullptr);
    if (i != L - 1) {  // F.pad(x, (0, 1, 0, 1)) then a 3x3 stride-2 conv without padding
      Tensor t;
      conv(cat("encoder.down_blocks.", i, ".downsamplers.0.conv"), h, t, 2, 0, 1);
      h = std::move(t);
    }
  }
  for (int j = 0; j < 2; ++j) resblock(cat("encoder.mid_block.resnets.", j), h, nullptr);
  Tensor a;
  norm("encoder.norm_out", h, a, nullptr, true);
  conv("encoder.conv_out.conv", a, h, 1, 1, 1);
  return h;
}

Stvae::Tensor Stvae::run_decoder(Tensor z) const {
  const int L = cfg_.levels();
  Tensor h;
  conv("decoder.conv_in.conv", z, h, 1, 1, 1);
  // The spatial norms read z at every resolution: upsampled once per level here.
  std::vector<Tensor> zs(static_cast<size_t>(L));
  zs[0] = std::move(z);
  for (size_t l = 1; l < zs.size(); ++l) {
    const Tensor& s = zs[l - 1];
    zs[l].resize(s.B, s.C, 2 * s.H, 2 * s.W);
    be_->upsample_nearest2x(s.d, zs[l].d, s.B * s.C, s.H, s.W);
  }
  for (int j = 0; j < 2; ++j) resblock(cat("decoder.mid_block.resnets.", j), h, &zs);
  for (int i = 0; i < L; ++i) {
    for (int j = 0; j <= cfg_.layers_per_block; ++j)
      resblock(cat("decoder.up_blocks.", i, ".resnets.", j), h, &zs);
    if (i != L - 1) {
      Tensor u;
      u.resize(h.B, h.C, 2 * h.H, 2 * h.W);
      be_->upsample_nearest2x(h.d, u.d, h.B * h.C, h.H, h.W);
      h.release();  // back to the pool before the conv allocates
      conv(cat("decoder.up_blocks.", i, ".upsamplers.0.conv"), u, h, 1, 1, 1);
    }
  }
  Tensor a;
  norm("decoder.norm_out", h, a, &zs, true);
  conv("decoder.conv_out.conv", a, h, 1, 1, 1);
  return h;
}

Array Stvae::encode_moments(const Array& images) const {
  const int f = cfg_.downsample_factor();
  const auto& s = images.shape;
  UVIT_CHECK(s.size() == 4 && s[0] > 0 && s[1] == cfg_.in_channels && s[2] > 0 && s[3] > 0 &&
                 s[2] % f == 0 && s[3] % f == 0,
             "stvae encode: images have shape ", shape_str(s), ", expected [B, ", cfg_.in_channels,
             ", H, W] with H and W positive multiples of ", f);
  PoolScope scope(*pool_);
  Tensor x;
  x.resize(int(s[0]), int(s[1]), int(s[2]), int(s[3]));
  const std::vector<float> host = images.to_f32();
  be_->upload(x.d, host.data(), host.size() * sizeof(float));
  return download(run_encoder(std::move(x)));
}

Array Stvae::decode(const Array& z) const {
  const auto& s = z.shape;
  UVIT_CHECK(s.size() == 4 && s[0] > 0 && s[1] == cfg_.latent_channels && s[2] > 0 && s[3] > 0,
             "stvae decode: latents have shape ", shape_str(s), ", expected [B, ",
             cfg_.latent_channels, ", h, w]");
  PoolScope scope(*pool_);
  Tensor x;
  x.resize(int(s[0]), int(s[1]), int(s[2]), int(s[3]));
  std::vector<float> host = z.to_f32();
  // LaVin's decode_latents: latents.div_(scaling_factor).add_(shift_factor)
  const float sc = float(cfg_.scaling_factor), sh = float(cfg_.shift_factor);
  for (float& v : host) v = v / sc + sh;
  be_->upload(x.d, host.data(), host.size() * sizeof(float));
  return download(run_decoder(std::move(x)));
}

Array Stvae::download(const Tensor& t) const {
  std::vector<float> host(t.size());
  be_->download(host.data(), t.d, host.size() * sizeof(float));
  return Array::from_f32({t.B, t.C, t.H, t.W}, host.data());
}

}  // namespace uvit
