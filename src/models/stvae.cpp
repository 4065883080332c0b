// The ST-VAE's forward passes (docs/stvae.md): NCHW (clips NCTHW) fp32 through the Backend, the
// causal 3-D convolutions folded to 2-D ones at load for one frame, their taps stacked for clips.
#include "models/stvae.hpp"

#include <algorithm>
#include <cmath>

#include "io/weights_views.hpp"
#include "models/autoencoder_conv.hpp"
#include "models/autoencoder_tensors.hpp"
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

bool positive(const std::vector<int64_t>& shape) {
  return std::all_of(shape.begin(), shape.end(), [](int64_t v) { return v > 0; });
}

// A clip convolution gathers its frames into images of at most this many floats (with its output
// images) per 2-D convolution call: 128 MiB, at least one frame.
constexpr long kChunkFloats = 1L << 25;

// PyTorch's nearest source index (F.interpolate(size=...), upsample_nearest): exact for equal
// and doubled sizes, otherwise floor(dst * (in / out)) in float.
int nearest(int dst, int in, int out) {
  if (in == out) return dst;
  if (out == 2 * in) return dst >> 1;
  const float scale = float(in) / float(out);
  return std::min(int(std::floor(float(dst) * scale)), in - 1);
}

// The spatial norm's resize of z's `in` frames to f's `out` (STVAESpatialNorm3D): for an odd
// out > 1 the first frame alone and the other frames together, else all at once.
std::vector<int> spatial_norm_frames(int in, int out) {
  std::vector<int> src(size_t(out), 0);
  const bool split = out > 1 && out % 2 == 1;
  UVIT_CHECK(!split || in > 1, "stvae: no latent frames to resize to ", out);  // a bug
  for (int t = 0; t < out; ++t)
    src[size_t(t)] = !split   ? nearest(t, in, out)
                     : t == 0 ? 0
                              : 1 + nearest(t - 1, in - 1, out - 1);
  return src;
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

void stvae_check_frames(const StvaeConfig& cfg, int64_t frames, const std::string& what) {
  const int r = cfg.time_compression();
  UVIT_CHECK(frames >= 1 && (frames - 1) % r == 0, what, ": a clip of ", frames,
             " frames; the ST-VAE compresses time by ", r, " and takes 1 + ", r, "k frames (1, ",
             1 + r, ", ", 1 + 2 * r, ", ...)");
}

std::vector<float> stack_causal_conv3d(const Array& w) {
  UVIT_CHECK(w.shape.size() == 5, "stack_causal_conv3d: weight ", shape_str(w.shape),
             " is not [O, I, kt, kh, kw]");
  const std::vector<float> v = w.to_f32();
  const int64_t O = w.shape[0], I = w.shape[1], kt = w.shape[2], k2 = w.shape[3] * w.shape[4];
  std::vector<float> out(v.size());
  for (int64_t o = 0; o < O; ++o)
    for (int64_t i = 0; i < I; ++i)
      for (int64_t j = 0; j < kt; ++j)
        std::copy_n(v.begin() + ((o * I + i) * kt + j) * k2, k2,
                    out.begin() + ((o * kt + j) * I + i) * k2);
  return out;
}

Stvae::Stvae(const StvaeConfig& cfg, NamedArrays weights, const std::string& what,
             const std::string& device, const std::string& precision, bool clips) {
  ArrayReader r(weights, what);
  *this = Stvae(cfg, r, what, make_encoder_backend(device, precision), clips, AutoencoderUse::both);
}

// The directory is checked first, then each tensor is read once, folded and uploaded: one tensor's
// host copy at a time, never the whole file's (docs/memory.md, "Loading the encoders' weights").
Stvae::Stvae(const StvaeConfig& cfg, TensorReader& file, const std::string& what,
             std::shared_ptr<Backend> be, bool clips, AutoencoderUse use)
    : cfg_(cfg), clips_(clips), use_(use), be_(std::move(be)) {
  auto expected = stvae_param_shapes(cfg);
  TensorList t = tensor_list(file.tensors());
  skipped_ = keep_autoencoder_tensors(t);
  check_weight_shapes(t, expected, what, "lavin_stvae");
  // The whole file is checked; the half not used is never read (docs/memory.md).
  std::erase_if(expected, [&](const auto& e) { return !autoencoder_tensor_used(e.first, use); });
  RenamedReader r(file, std::move(t));
  std::map<std::string, size_t> given;
  for (size_t i = 0; i < r.tensors().size(); ++i) given[r.tensors()[i].name] = i;
  // Where each official tensor goes: its 2-D name and an offset in it. A spatial norm's conv_y
  // and conv_b become one 1x1 conv "yb" (scale rows, then shift rows) whose scale bias is lowered
  // by 1, as Backend::modulate_fwd multiplies by 1 + scale.
  struct Slot {
    std::string name, time;  // time: the stacked taps' name, when kept (clips)
    size_t at = 0;
  };
  std::vector<Slot> slots;
  std::vector<std::string> order;  // the 2-D names, in the order of their memory
  for (const auto& [name, shape] : expected) {
    std::vector<int64_t> s2 = shape;
    if (s2.size() == 5) s2.erase(s2.begin() + 2);  // [O, I, kt, kh, kw] -> [O, I, kh, kw]
    Slot slot{name, "", 0};
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
    if (clips_ && shape.size() == 5 && shape[2] > 1) {  // [O, I, kt, kh, kw] -> [O, kt*I, kh, kw]
      slot.time = name.substr(0, name.size() - 7) + ".time.weight";  // minus ".weight"
      shapes_[slot.time] = {shape[0], shape[2] * shape[1], shape[3], shape[4]};
      order.push_back(slot.time);
    }
    slots.push_back(slot);
  }
  // One backend allocation holds every weight, read and uploaded tensor by tensor.
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
    const TensorInfo& info = r.tensors()[given.at(name)];
    Array a = Array::uninitialised(info.dtype, info.shape);
    r.read(given.at(name), a.data.data());
    if (!slots[i].time.empty()) {
      const std::vector<float> t = stack_causal_conv3d(a);
      be_->upload(dst.at(slots[i].time), t.data(), t.size() * sizeof(float));
    }
    std::vector<float> v = shape.size() == 5 ? fold_causal_conv3d(a) : a.to_f32();
    if (name.find(".conv_y.conv.") != std::string::npos && name.ends_with(".bias"))
      for (float& x : v) x -= 1.f;
    be_->upload(dst.at(slots[i].name) + slots[i].at, v.data(), v.size() * sizeof(float));
  }
}

Stvae Stvae::load(const std::string& path, const StvaeConfig& cfg, const std::string& device,
                  const std::string& precision, bool clips, AutoencoderUse use) {
  auto be = make_encoder_backend(device, precision);  // a missing device fails before the load
  const std::unique_ptr<TensorReader> r = open_weights(path);
  return Stvae(cfg, *r, path, std::move(be), clips, use);
}

const float* Stvae::p(const std::string& name) const {
  auto it = ptr_.find(name);
  UVIT_CHECK(it != ptr_.end(), "stvae: no parameter '", name, "'");  // a bug, not bad input
  return it->second;
}

void Stvae::conv(const std::string& name, const Tensor& x, Tensor& y, int stride, int pad_lt,
                 int pad_rb) const {
  const auto& ws = shapes_.at(name + ".weight");
  const bool pointwise = ws[2] == 1 && ws[3] == 1 && stride == 1 && pad_lt == 0 && pad_rb == 0;
  if (x.T > 1 && !pointwise) return conv_frames(name, x, y, stride, pad_lt, pad_rb);
  // One frame (the folded weights), or a 1x1(x1) convolution, which maps every pixel alone: the
  // frames of a clip are then the rows of one [T*H, W] image.
  Conv2dShape s;
  s.B = x.B, s.Cin = x.C, s.H = x.T * x.H, s.W = x.W, s.Cout = int(ws[0]);
  s.kh = int(ws[2]), s.kw = int(ws[3]), s.sh = s.sw = stride;
  s.pt = s.pl = pad_lt, s.pb = s.pr = pad_rb;
  y.resize(x.B, s.Cout, x.T, s.out_h() / x.T, s.out_w());
  be_->conv2d(s, x.d, p(name + ".weight"), p(name + ".bias"), y.d);
}

// A 2-D convolution per frame of a clip: output frame t convolves the input frames
// max(t - kt + 1 + j, 0), j < kt, stacked on the channels: kt = 3 with a causal 3-D convolution's
// stacked taps (the first frame repeated in front, docs/stvae.md), kt = 1 for the samplers' 2-D
// convolutions. Frames are gathered into images [n, kt*C, H, W], convolved n at a time and
// scattered back into the NCTHW output. A causal convolution's frame 0 sees frame 0 only: it is
// the image path's folded convolution, a third of the work.
void Stvae::conv_frames(const std::string& name, const Tensor& x, Tensor& y, int stride, int pad_lt,
                        int pad_rb) const {
  const std::string tw = name + ".time.weight";
  const bool causal = shapes_.count(tw) != 0;
  const auto& ws = shapes_.at(causal ? tw : name + ".weight");
  const int kt = int(ws[1]) / x.C;
  UVIT_CHECK(kt * x.C == int(ws[1]), "stvae: ", name, " takes ", ws[1], " channels, not ",
             x.C);  // a bug, not bad input
  Conv2dShape s;
  s.Cin = kt * x.C, s.H = x.H, s.W = x.W, s.Cout = int(ws[0]);
  s.kh = int(ws[2]), s.kw = int(ws[3]), s.sh = s.sw = stride;
  s.pt = s.pl = pad_lt, s.pb = s.pr = pad_rb;
  const int Ho = s.out_h(), Wo = s.out_w(), first = causal ? 1 : 0, per = x.T - first;
  const int total = x.B * per;
  const long hw = long(x.plane()), hwo = long(Ho) * Wo;
  y.resize(x.B, s.Cout, x.T, Ho, Wo);
  if (causal) {
    Tensor y0;
    conv(name, select_frames(x, {0}), y0, stride, pad_lt, pad_rb);  // one frame: folded
    be_->copy_2d(y.d, y.T * hwo, y0.d, hwo, long(y.B) * y.C, hwo);
  }
  const int n = int(std::clamp(kChunkFloats / (s.Cin * hw + s.Cout * hwo), 1L, long(total)));
  Tensor in, out;
  in.resize(n, s.Cin, x.H, x.W);
  out.resize(n, s.Cout, Ho, Wo);
  const float* w = p(causal ? tw : name + ".weight");
  const long in_stride = long(kt) * x.C * hw;  // one gathered image
  for (int i0 = 0; i0 < total; i0 += n) {
    s.B = std::min(n, total - i0);
    // A run: images i .. i + run - 1 of the chunk are frames t .. t + run - 1 of clip b, moved by
    // one copy_3d per tap (frames one plane apart, channels T planes apart); the images whose tap
    // falls before frame 0 (the first z) repeat frame 0, a broadcast copy_3d of their own.
    for (int i = 0, run; i < s.B; i += run) {
      const int b = (i0 + i) / per, t = first + (i0 + i) % per;
      run = std::min(s.B - i, x.T - t);
      const float* xb = x.d + size_t(b) * x.C * x.T * hw;
      for (int j = 0; j < kt; ++j) {
        float* d = in.d + size_t(i) * in_stride + size_t(j) * x.C * hw;
        const int z = std::clamp(kt - 1 - j - t, 0, run);  // frame max(t + u - kt + 1 + j, 0)
        if (z) be_->copy_3d(d, hw, in_stride, xb, x.T * hw, 0, z, x.C, hw, false);
        if (run > z)
          be_->copy_3d(d + z * in_stride, hw, in_stride, xb + (t + z - kt + 1 + j) * hw, x.T * hw,
                       hw, run - z, x.C, hw, false);
      }
    }
    be_->conv2d(s, in.d, w, p(name + ".bias"), out.d);
    for (int i = 0, run; i < s.B; i += run) {
      const int b = (i0 + i) / per, t = first + (i0 + i) % per;
      run = std::min(s.B - i, x.T - t);
      be_->copy_3d(y.d + (size_t(b) * y.C * y.T + size_t(t)) * hwo, y.T * hwo, hwo,
                   out.d + size_t(i) * y.C * hwo, hwo, long(y.C) * hwo, run, y.C, hwo, false);
    }
  }
}

// y[b, :, t] = x[b, :, src[t]]: frames of a clip picked (or repeated) by index; the planes of
// one frame are T planes apart over all (b, c), so one 2-D copy per frame.
Stvae::Tensor Stvae::select_frames(const Tensor& x, const std::vector<int>& src) const {
  Tensor y;
  y.resize(x.B, x.C, int(src.size()), x.H, x.W);
  const long hw = long(x.plane());
  for (int t = 0; t < y.T; ++t)
    be_->copy_2d(y.d + size_t(t) * hw, y.T * hw, x.d + size_t(src[size_t(t)]) * hw, x.T * hw,
                 long(x.B) * x.C, hw);
  return y;
}

// The downsampler's time pooling (compress_time) of a clip of odd T: frame 0 kept, the pairs
// (2u - 1, 2u) averaged as (a + b) * 0.5, the float avg_pool1d's (a + b) / 2 gives; frame 0 is
// (x0 + x0) * 0.5 = x0 exactly. Encode admits only clips whose compressed levels see odd T.
Stvae::Tensor Stvae::pool_time(const Tensor& x) const {
  UVIT_CHECK(x.T % 2 == 1, "stvae: time pooling of ", x.T, " frames");  // a bug, not bad input
  std::vector<int> odd(size_t(x.T + 1) / 2), even(odd.size());
  for (size_t u = 1; u < odd.size(); ++u) odd[u] = int(2 * u - 1), even[u] = int(2 * u);
  Tensor y = select_frames(x, odd);
  const Tensor e = select_frames(x, even);
  be_->axpy(y.d, e.d, 1.f, y.size());
  be_->scale(y.d, 0.5f, y.size());
  return y;
}

// GroupNorm(32, eps 1e-6), or with the decoder's latents `zs` the spatial norm
// GroupNorm(x) * conv_y(z') + conv_b(z'), z' = z upsampled (nearest) to x's size; swish after.
// A clip's statistics are over (C/32, T, H, W): GroupNorm with HW := T*H*W on NCTHW.
void Stvae::norm(const std::string& n, const Tensor& x, Tensor& y, const std::vector<Tensor>* zs,
                 bool swish) const {
  y.resize(x.B, x.C, x.T, x.H, x.W);
  if (!zs) {
    be_->group_norm(x.d, p(n + ".weight"), p(n + ".bias"), y.d, x.B, x.C, int(x.volume()), kGroups,
                    kNormEps, swish);
    return;
  }
  be_->group_norm(x.d, p(n + ".norm_layer.weight"), p(n + ".norm_layer.bias"), y.d, x.B, x.C,
                  int(x.volume()), kGroups, kNormEps, false);
  const Tensor* z = nullptr;
  for (const Tensor& t : *zs)
    if (t.T == x.T && t.H == x.H && t.W == x.W) z = &t;
  UVIT_CHECK(z, "stvae: no latent at ", x.T, "x", x.H, "x", x.W);  // a bug, not bad input
  Tensor yb;
  conv(n + ".yb", *z, yb, 1, 0, 0);
  const int hw = int(x.volume());
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
      if (i < cfg_.time_levels() && h.T > 1) h = pool_time(h);
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
  const int L = cfg_.levels(), tl = cfg_.time_levels();
  Tensor h;
  conv("decoder.conv_in.conv", z, h, 1, 1, 1);
  // The spatial norms read z at every level's size: upsampled in space once per level, then
  // resized to the level's frames (frames[i]: a compressing upsampler makes T frames 2T - 1).
  std::vector<Tensor> zs(static_cast<size_t>(L));
  std::vector<int> frames(static_cast<size_t>(L), z.T);
  zs[0] = std::move(z);
  for (size_t l = 1; l < zs.size(); ++l) {
    const Tensor& s = zs[l - 1];
    zs[l].resize(s.B, s.C, s.T, 2 * s.H, 2 * s.W);
    be_->upsample_nearest2x(s.d, zs[l].d, s.B * s.C * s.T, s.H, s.W);
    const int f = frames[l - 1];
    frames[l] = int(l) - 1 < tl && f > 1 ? 2 * f - 1 : f;
  }
  for (size_t l = 0; l < zs.size(); ++l)
    if (frames[l] != zs[l].T) zs[l] = select_frames(zs[l], spatial_norm_frames(zs[l].T, frames[l]));
  for (int j = 0; j < 2; ++j) resblock(cat("decoder.mid_block.resnets.", j), h, &zs);
  for (int i = 0; i < L; ++i) {
    for (int j = 0; j <= cfg_.layers_per_block; ++j)
      resblock(cat("decoder.up_blocks.", i, ".resnets.", j), h, &zs);
    if (i != L - 1) {
      if (i < tl && h.T > 1) {  // frame 0 upsampled in space only, the others in time too
        std::vector<int> src(size_t(2 * h.T - 1), 0);
        for (size_t u = 1; u < src.size(); ++u) src[u] = 1 + int(u - 1) / 2;
        h = select_frames(h, src);
      }
      Tensor u;
      u.resize(h.B, h.C, h.T, 2 * h.H, 2 * h.W);
      be_->upsample_nearest2x(h.d, u.d, h.B * h.C * h.T, h.H, h.W);
      h.release();  // back to the pool before the conv allocates
      conv(cat("decoder.up_blocks.", i, ".upsamplers.0.conv"), u, h, 1, 1, 1);
    }
  }
  Tensor a;
  norm("decoder.norm_out", h, a, &zs, true);
  conv("decoder.conv_out.conv", a, h, 1, 1, 1);
  return h;
}

// An image batch [B, C, H, W] or a clip batch [B, C, T, H, W] in backend memory; latents get
// LaVin's decode_latents normalisation, z / scaling_factor + shift_factor.
Stvae::Tensor Stvae::upload(const Array& a, bool latents) const {
  const auto& s = a.shape;
  const int T = s.size() == 5 ? int(s[2]) : 1;
  UVIT_CHECK(T == 1 || clips_, "stvae: a clip of ", T, " frames needs the causal ",
             "convolutions' per-tap weights: load the model for clips");
  Tensor x;
  x.resize(int(s[0]), int(s[1]), T, int(s[s.size() - 2]), int(s.back()));
  std::vector<float> host = a.to_f32();
  const float sc = float(cfg_.scaling_factor), sh = float(cfg_.shift_factor);
  if (latents)
    for (float& v : host) v = v / sc + sh;
  be_->upload(x.d, host.data(), host.size() * sizeof(float));
  return x;
}

Array Stvae::encode_moments(const Array& images) const {
  UVIT_CHECK(use_ != AutoencoderUse::decode, "stvae encode: this ST-VAE was loaded to decode only");
  const int f = cfg_.downsample_factor();
  const auto& s = images.shape;
  const size_t n = s.size();
  UVIT_CHECK((n == 4 || n == 5) && positive(s) && s[1] == cfg_.in_channels && s[n - 2] % f == 0 &&
                 s.back() % f == 0,
             "stvae encode: input has shape ", shape_str(s), ", expected images [B, ",
             cfg_.in_channels, ", H, W] or clips [B, ", cfg_.in_channels,
             ", T, H, W] with H and W positive multiples of ", f);
  if (n == 5) stvae_check_frames(cfg_, s[2], "stvae encode");
  PoolScope scope(*pool_);
  // One summation order at any thread count: the SD autoencoder's convolution kinds (the plain-nchw
  // default gave other bytes at 2-4 threads than at 1; docs/stvae.md, "Threads").
  const nn::ConvImplScope same_bits(kEncoderConv);
  return download(run_encoder(upload(images, false)), n == 5);
}

Array Stvae::decode(const Array& z) const {
  UVIT_CHECK(use_ != AutoencoderUse::encode, "stvae decode: this ST-VAE was loaded to encode only");
  const auto& s = z.shape;
  UVIT_CHECK((s.size() == 4 || s.size() == 5) && positive(s) && s[1] == cfg_.latent_channels,
             "stvae decode: latents have shape ", shape_str(s), ", expected [B, ",
             cfg_.latent_channels, ", h, w] or [B, ", cfg_.latent_channels, ", t, h, w]");
  PoolScope scope(*pool_);
  const nn::ConvImplScope same_bits(kDecoderConv);  // (encode_moments says why)
  return download(run_decoder(upload(z, true)), s.size() == 5);
}

Array Stvae::download(const Tensor& t, bool clip) const {
  std::vector<float> host(t.size());
  be_->download(host.data(), t.d, host.size() * sizeof(float));
  if (clip) return Array::from_f32({t.B, t.C, t.T, t.H, t.W}, host.data());
  return Array::from_f32({t.B, t.C, t.H, t.W}, host.data());
}

}  // namespace uvit
