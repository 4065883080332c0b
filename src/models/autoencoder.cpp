// The KL autoencoder's forward passes (SPEC 13; VA-VAE in docs/autoencoder.md): NCHW fp32 through
// the Backend (CPU or CUDA).
#include "uvit/autoencoder.hpp"

#include <algorithm>
#include <cmath>

#include "dist/weights_hash.hpp"
#include "io/weights_views.hpp"
#include "models/autoencoder_conv.hpp"
#include "models/autoencoder_tensors.hpp"
#include "models/param_stage.hpp"
#include "models/pooled_tensor.hpp"
#include "uvit/backend.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"
#include "uvit/nn.hpp"

namespace uvit {

struct Autoencoder::Pool : BufferPool {};

// An activation [B, C, H, W] in backend memory, borrowed from the pass's pool.
struct Autoencoder::Tensor : PooledTensor {};

namespace {

constexpr int kGroups = 32;
constexpr float kNormEps = 1e-6f;

bool contains(const std::vector<int>& v, int x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

}  // namespace

bool autoencoder_tensor_used(const std::string& name, AutoencoderUse use) {
  if (use == AutoencoderUse::both) return true;
  const bool decoder = name.rfind("decoder.", 0) == 0 || name.rfind("post_quant_conv.", 0) == 0;
  return decoder == (use == AutoencoderUse::decode);
}

Autoencoder::Autoencoder(const AutoencoderConfig& cfg, NamedArrays weights, const std::string& what,
                         const std::string& device, const std::string& precision) {
  ArrayReader r(weights, what);
  *this = Autoencoder(cfg, r, what, make_encoder_backend(device, precision), AutoencoderUse::both);
}

// The file's directory is matched and checked first, then each tensor is read once, straight into
// its place in the backend buffer (through one tensor's host buffer off the CPU): no copy of the
// whole file (docs/memory.md, "Loading the encoders' weights").
Autoencoder::Autoencoder(const AutoencoderConfig& cfg, TensorReader& r, const std::string& what,
                         std::shared_ptr<Backend> be, AutoencoderUse use)
    : cfg_(cfg), use_(use), be_(std::move(be)) {
  TensorList t = tensor_list(r.tensors());
  skipped_ = keep_autoencoder_tensors(t, cfg.decoder_only);
  const bool diffusers = autoencoder_from_diffusers(t, int(cfg.ch_mult.size()));
  check_autoencoder_weights(t, cfg, diffusers ? what + " (diffusers layout)" : what);
  // The whole file is checked; the half not used is never read.
  t.erase(
      std::remove_if(t.begin(), t.end(),
                     [&](const auto& e) { return !autoencoder_tensor_used(e.second.name, use); }),
      t.end());
  // One backend allocation holds every parameter used, in the state_dict's order.
  ParamTable table;
  for (const auto& [name, shape] : autoencoder_param_shapes(cfg)) {
    if (!autoencoder_tensor_used(name, use)) continue;
    shapes_[name] = shape;
    table.add(name, shape);
  }
  float* base = be_->alloc(table.total());
  params_ = std::shared_ptr<float>(base, [be = be_](float* q) { be->free_bytes(q); });
  pool_ = std::make_shared<Pool>();
  pool_->be = be_.get();  // be_ outlives it: declared before pool_, destroyed after
  for (const ParamEntry& e : table.entries()) ptr_[e.name] = base + e.offset;
  RenamedReader view(r, std::move(t));
  ParamStage stage(*be_, base);
  read_params(view, table, stage);
}

void Autoencoder::set_latent_stats(const LatentStats& stats) {
  UVIT_CHECK(stats.channels() == cfg_.embed_dim && stats.std.size() == stats.mean.size(),
             "latent stats have ", stats.channels(), " channels, the autoencoder's latents ",
             cfg_.embed_dim);
  stats_ = stats;
}

Autoencoder Autoencoder::load(const std::string& path, const AutoencoderConfig& cfg,
                              const std::string& device, const std::string& precision,
                              AutoencoderUse use) {
  // a device that is not there fails before the load
  auto be = make_encoder_backend(device, precision);
  const std::unique_ptr<TensorReader> r = open_weights(path);
  return Autoencoder(cfg, *r, path, std::move(be), use);
}

const float* Autoencoder::p(const std::string& name) const {
  auto it = ptr_.find(name);
  UVIT_CHECK(it != ptr_.end(), "autoencoder: no parameter '", name, "'");  // a bug, not bad input
  return it->second;
}

void Autoencoder::conv(const std::string& name, const Tensor& x, Tensor& y, int k, int stride,
                       int pad_lt, int pad_rb) const {
  const auto& ws = shapes_.at(name + ".weight");
  Conv2dShape s;
  s.B = x.B, s.Cin = x.C, s.H = x.H, s.W = x.W, s.Cout = int(ws[0]);
  s.kh = s.kw = k, s.sh = s.sw = stride;
  s.pt = s.pl = pad_lt, s.pb = s.pr = pad_rb;
  y.resize(x.B, s.Cout, s.out_h(), s.out_w());
  be_->conv2d(s, x.d, p(name + ".weight"), p(name + ".bias"), y.d);
}

void Autoencoder::group_norm_swish(const std::string& name, const Tensor& x, Tensor& y,
                                   bool swish) const {
  y.resize(x.B, x.C, x.H, x.W);
  be_->group_norm(x.d, p(name + ".weight"), p(name + ".bias"), y.d, x.B, x.C, int(x.plane()),
                  kGroups, kNormEps, swish);
}

// x = shortcut(x) + conv2(swish(norm2(conv1(swish(norm1(x)))))); dropout is the identity here.
// Three activations live at once (docs/memory.md, "The decode's peak"): with a shortcut it runs
// first, so that norm1 can overwrite x; norm2 always runs in place.
void Autoencoder::resblock(const std::string& n, Tensor& x) const {
  Tensor r, h;
  const bool shortcut = shapes_.count(n + ".nin_shortcut.weight") != 0;
  if (shortcut) {
    conv(n + ".nin_shortcut", x, r, 1, 1, 0, 0);
    group_norm_swish(n + ".norm1", x, x, true);
    conv(n + ".conv1", x, h, 3, 1, 1, 1);
    x.release();
  } else {
    group_norm_swish(n + ".norm1", x, r, true);
    conv(n + ".conv1", r, h, 3, 1, 1, 1);
    r.release();
  }
  group_norm_swish(n + ".norm2", h, h, true);
  Tensor y;
  conv(n + ".conv2", h, y, 3, 1, 1, 1);
  h.release();
  be_->axpy(y.d, shortcut ? r.d : x.d, 1.f, y.size());  // y + x == x + y: the same bytes
  x = std::move(y);
}

// x += proj_out(attention(q, k, v)) with q, k, v = 1x1 convs of norm(x).
void Autoencoder::attnblock(const std::string& n, Tensor& x) const {
  Tensor hn, q, k, v, o;
  group_norm_swish(n + ".norm", x, hn, false);
  conv(n + ".q", hn, q, 1, 1, 0, 0);
  conv(n + ".k", hn, k, 1, 1, 0, 0);
  conv(n + ".v", hn, v, 1, 1, 0, 0);
  o.resize(x.B, x.C, x.H, x.W);
  be_->spatial_attention(q.d, k.d, v.d, o.d, x.B, x.C, int(x.plane()), 1.f / std::sqrt(float(x.C)));
  conv(n + ".proj_out", o, hn, 1, 1, 0, 0);
  be_->axpy(x.d, hn.d, 1.f, x.size());
}

Autoencoder::Tensor Autoencoder::run_encoder(Tensor x) const {
  const int L = int(cfg_.ch_mult.size());
  Tensor h;
  conv("encoder.conv_in", x, h, 3, 1, 1, 1);
  int res = cfg_.resolution;  // attention placement follows the config, not the input size
  for (int i = 0; i < L; ++i) {
    for (int j = 0; j < cfg_.num_res_blocks; ++j) {
      resblock(cat("encoder.down.", i, ".block.", j), h);
      if (contains(cfg_.attn_resolutions, res)) attnblock(cat("encoder.down.", i, ".attn.", j), h);
    }
    if (i != L - 1) {
      // F.pad(x, (0, 1, 0, 1)) then a 3x3 stride-2 conv without padding.
      Tensor t;
      conv(cat("encoder.down.", i, ".downsample.conv"), h, t, 3, 2, 0, 1);
      h = std::move(t);
      res /= 2;
    }
  }
  resblock("encoder.mid.block_1", h);
  attnblock("encoder.mid.attn_1", h);
  resblock("encoder.mid.block_2", h);
  Tensor y;
  group_norm_swish("encoder.norm_out", h, h, true);
  conv("encoder.conv_out", h, y, 3, 1, 1, 1);
  return y;
}

Autoencoder::Tensor Autoencoder::run_decoder(Tensor z) const {
  const int L = int(cfg_.ch_mult.size());
  Tensor h;
  conv("decoder.conv_in", z, h, 3, 1, 1, 1);
  resblock("decoder.mid.block_1", h);
  attnblock("decoder.mid.attn_1", h);
  resblock("decoder.mid.block_2", h);
  int res = cfg_.resolution >> (L - 1);
  for (int i = L - 1; i >= 0; --i) {
    for (int j = 0; j <= cfg_.num_res_blocks; ++j) {
      resblock(cat("decoder.up.", i, ".block.", j), h);
      if (contains(cfg_.attn_resolutions, res)) attnblock(cat("decoder.up.", i, ".attn.", j), h);
    }
    if (i != 0) {
      Tensor u;
      u.resize(h.B, h.C, 2 * h.H, 2 * h.W);
      be_->upsample_nearest2x(h.d, u.d, h.B * h.C, h.H, h.W);
      h.release();  // back to the pool before the conv allocates
      conv(cat("decoder.up.", i, ".upsample.conv"), u, h, 3, 1, 1, 1);
      res *= 2;
    }
  }
  Tensor y;
  group_norm_swish("decoder.norm_out", h, h, true);
  conv("decoder.conv_out", h, y, 3, 1, 1, 1);
  return y;
}

// kEncoderConv, kDecoderConv: models/autoencoder_conv.hpp.

Array Autoencoder::encode_moments(const Array& images) const {
  UVIT_CHECK(!cfg_.decoder_only,
             "autoencoder encode: this is a decoder only (SVG's features come "
             "from its DINOv3 encoder, not from this autoencoder)");
  UVIT_CHECK(use_ != AutoencoderUse::decode,
             "autoencoder encode: this autoencoder was loaded to decode only");
  const int f = cfg_.downsample_factor();
  const auto& s = images.shape;
  UVIT_CHECK(s.size() == 4 && s[0] > 0 && s[1] == cfg_.in_channels && s[2] > 0 && s[3] > 0 &&
                 s[2] % f == 0 && s[3] % f == 0,
             "autoencoder encode: images have shape ", shape_str(s), ", expected [B, ",
             cfg_.in_channels, ", H, W] with H and W positive multiples of ", f);
  PoolScope scope(*pool_);
  const nn::ConvImplScope same_bits(kEncoderConv);
  Tensor x;
  x.resize(int(s[0]), int(s[1]), int(s[2]), int(s[3]));
  const std::vector<float> host = images.to_f32();
  be_->upload(x.d, host.data(), host.size() * sizeof(float));
  Tensor h = run_encoder(std::move(x)), m;
  conv("quant_conv", h, m, 1, 1, 0, 0);
  return download(m);
}

uint64_t Autoencoder::weights_hash() const {
  size_t n = 0;  // the tensors loaded, one after another in params_ (the constructor's table)
  for (const auto& [name, shape] : shapes_) {
    size_t k = 1;
    for (int64_t d : shape) k *= size_t(d);
    n += k;
  }
  return hash_backend_floats(*be_, params_.get(), n, kWeightsHashSeed);
}

Array Autoencoder::decode(const Array& z) const {
  UVIT_CHECK(use_ != AutoencoderUse::encode,
             "autoencoder decode: this autoencoder was loaded to encode only");
  const auto& s = z.shape;
  UVIT_CHECK(s.size() == 4 && s[0] > 0 && s[1] == cfg_.embed_dim && s[2] > 0 && s[3] > 0,
             "autoencoder decode: latents have shape ", shape_str(s), ", expected [B, ",
             cfg_.embed_dim, ", h, w]");
  PoolScope scope(*pool_);
  const nn::ConvImplScope same_bits(kDecoderConv);
  Tensor x, h;
  x.resize(int(s[0]), int(s[1]), int(s[2]), int(s[3]));
  std::vector<float> host = z.to_f32();
  const size_t plane = size_t(s[2] * s[3]);
  // As LightningDiT's (z * std) / multiplier + mean; SD's z / scale_factor when std 1, mean 0.
  for (size_t i = 0; i < host.size(); ++i)
    host[i] = decoder_input(int((i / plane) % size_t(cfg_.embed_dim)), host[i]);
  be_->upload(x.d, host.data(), host.size() * sizeof(float));
  if (cfg_.decoder_only)
    h = std::move(x);  // DinoDecoder.decode: self.decoder(z)
  else
    conv("post_quant_conv", x, h, 1, 1, 0, 0);
  Tensor y = run_decoder(std::move(h));
  return download(y);
}

Array Autoencoder::download(const Tensor& t) const {
  std::vector<float> host(t.size());
  be_->download(host.data(), t.d, host.size() * sizeof(float));
  return Array::from_f32({t.B, t.C, t.H, t.W}, host.data());
}

Array map_batches(const Array& in, int chunk, const std::function<Array(const Array&)>& fn,
                  const std::function<void(int64_t, int64_t)>& progress) {
  UVIT_CHECK(!in.shape.empty() && in.shape[0] > 0, "map_batches: empty input ",
             shape_str(in.shape));
  UVIT_CHECK(chunk > 0, "map_batches: chunk must be positive, got ", chunk);
  const int64_t n = in.shape[0];
  const size_t item = in.nbytes() / size_t(n);
  Array out;
  size_t out_item = 0;
  for (int64_t i = 0; i < n; i += chunk) {
    const int64_t m = std::min<int64_t>(chunk, n - i);
    Array part;
    part.dtype = in.dtype;
    part.shape = in.shape;
    part.shape[0] = m;
    part.data.assign(in.data.begin() + i * item, in.data.begin() + (i + m) * item);
    Array r = fn(part);
    if (i == 0) {
      out.dtype = r.dtype;
      out.shape = r.shape;
      out.shape[0] = n;
      out_item = r.nbytes() / size_t(m);
      out.data.resize(out_item * size_t(n));
    }
    std::copy(r.data.begin(), r.data.end(), out.data.begin() + i * out_item);
    if (progress) progress(i + m, n);
  }
  return out;
}

std::vector<float> decode_latents(const Autoencoder& ae, const std::vector<float>& z, int n, int c,
                                  int h, int w, int chunk,
                                  const std::function<void(int64_t, int64_t)>& progress) {
  UVIT_CHECK(z.size() == size_t(n) * c * h * w, "decode_latents: ", z.size(), " floats for ", n,
             " latents of [", c, ", ", h, ", ", w, "]");
  const Array out = map_batches(
      Array::from_f32({n, c, h, w}, z.data()), chunk,
      [&](const Array& part) { return ae.decode(part); }, progress);
  return out.to_f32();
}

}  // namespace uvit
