// The FID Inception-v3 (SPEC 17): weight loading with BatchNorm folded into the convolutions, and
// the forward pass on a Backend, a chunk of images per layer call (one on the CPU, 32 on a device).
// Branch outputs are written straight into their channel slice of the concatenated block output
// (strided images), and the 1x1 convolutions that read the same block input run as one fused
// convolution, whose first branch is then copied into place (one 2-D copy per chunk).
#include "uvit/inception.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>

#include "dist/weights_hash.hpp"
#include "io/weights_views.hpp"
#include "models/param_stage.hpp"
#include "uvit/backend.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"
#include "uvit/nn.hpp"

namespace uvit {

std::string inception_weights_path(const std::string& explicit_path) {
  std::string p = explicit_path;
  if (p.empty()) {
    const char* e = std::getenv("UVIT_INCEPTION");
    if (e) p = e;
  }
  UVIT_CHECK(!p.empty(), "the FID Inception weights are needed: pass --inception ",
             kInceptionWeightsName, " or set UVIT_INCEPTION (download: ", kInceptionWeightsUrl,
             ")");
  UVIT_CHECK(std::filesystem::is_regular_file(p), p,
             ": FID Inception weights not found (download: ", kInceptionWeightsUrl, ")");
  return p;
}

namespace {

// Where the tensors come from: a weights reader (each tensor read when the build asks for it,
// checked by name and shape against the reader's directory; with sizing set, nothing is read and
// empty vectors stand in: the build then only counts the packed floats), or (random_state_dict)
// random tensors made on request in the shape asked for, so the architecture is written down once.
struct Source {
  std::string file;
  TensorReader* reader = nullptr;
  std::map<std::string, size_t> index;  // name -> tensor of reader
  bool sizing = false;
  std::vector<bool> read, finite;  // per tensor of reader
  std::map<std::string, Array>* made = nullptr;
  std::mt19937_64* rng = nullptr;
};

// Scales as tests/reference/inception_torch.py's randomize().
Array random_tensor(const std::string& key, const std::vector<int64_t>& shape, std::mt19937_64& g) {
  size_t n = 1;
  for (int64_t d : shape) n *= size_t(d);
  std::normal_distribution<float> N01;
  std::uniform_real_distribution<float> U01;
  auto ends = [&](const char* s) { return key.ends_with(s); };
  // x = mul * (uniform ? U(0,1) : N(0,1)) + add
  float mul = 0.05f, add = 0;  // fc.weight
  bool uniform = false;
  if (ends(".conv.weight")) mul = std::sqrt(2.f / float(n / size_t(shape[0])));
  if (ends(".bn.weight")) mul = 0.2f, add = 1;
  if (ends(".bn.bias") || ends(".bn.running_mean")) mul = 0.1f;
  if (ends(".bn.running_var")) mul = 1, add = 0.5f, uniform = true;
  std::vector<float> v(n);
  for (float& x : v) x = mul * (uniform ? U01(g) : N01(g)) + add;
  return Array::from_f32(shape, v.data());
}

bool all_finite(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float f) { return std::isfinite(f); });
}

// Tensor `key` as fp32; its finiteness is checked later, in file order (check_finite).
std::vector<float> get(Source& s, const std::string& key, const std::vector<int64_t>& shape) {
  if (s.made) return ((*s.made)[key] = random_tensor(key, shape, *s.rng)).to_f32();
  auto it = s.index.find(key);
  UVIT_CHECK(it != s.index.end(), s.file, ": missing tensor ", key,
             " (expected the torchvision Inception3 layout of ", kInceptionWeightsName, ")");
  const TensorInfo& t = s.reader->tensors()[it->second];
  UVIT_CHECK(t.shape == shape, s.file, ": ", key, " has shape ", shape_str(t.shape), ", expected ",
             shape_str(shape));
  if (s.sizing) return {};
  std::vector<float> v(size_t(t.numel()));
  s.reader->read_f32(it->second, v.data());
  s.read[it->second] = true;
  s.finite[it->second] = all_finite(v);
  return v;
}

// Every float tensor of the file finite, the first that is not named (in file order); those the
// network does not use (AuxLogits.*) are read here, one at a time.
void check_finite(Source& s) {
  const std::vector<TensorInfo>& ts = s.reader->tensors();
  for (size_t i = 0; i < ts.size(); ++i) {
    if (ts[i].dtype == DType::I64) continue;  // num_batches_tracked
    if (!s.read[i]) {
      std::vector<float> v(size_t(ts[i].numel()));
      s.reader->read_f32(i, v.data());
      s.finite[i] = all_finite(v);
    }
    UVIT_CHECK(s.finite[i], s.file, ": tensor ", ts[i].name, " has non-finite values");
  }
}

// A convolution with its BatchNorm folded in, on the host while loading.
struct HostConv {
  int cin = 0, cout = 0, kh = 1, kw = 1, s = 1, ph = 0, pw = 0;
  std::vector<float> w, b;
};

// The same, packed: w and b are offsets into the backend's weight arena.
struct Conv {
  int cin = 0, cout = 0, kh = 1, kw = 1, s = 1, ph = 0, pw = 0;
  size_t w = 0, b = 0;
  int out_h(int H) const { return (H + 2 * ph - kh) / s + 1; }
  int out_w(int W) const { return (W + 2 * pw - kw) / s + 1; }
};

// All parameters in one block of host memory, each piece at the offset add() returns; with data
// null it only counts them (a sizing pass, whose pieces are empty: the sizes come from the
// architecture, so that the block is allocated once, at its size, without folding anything).
struct Packer {
  float* data = nullptr;
  size_t size = 0;
  // n floats: v's (empty in a sizing pass).
  size_t add(const std::vector<float>& v, size_t n) {
    const size_t o = size;
    if (data) {
      UVIT_CHECK(v.size() == n, "inception: a piece of ", v.size(), " floats, expected ", n);
      std::copy(v.begin(), v.end(), data + o);
    }
    size += n;
    return o;
  }
  Conv add(const HostConv& h) {
    Conv c;
    c.cin = h.cin, c.cout = h.cout, c.kh = h.kh, c.kw = h.kw, c.s = h.s, c.ph = h.ph, c.pw = h.pw;
    c.w = add(h.w, size_t(h.cout) * size_t(h.cin) * size_t(h.kh) * size_t(h.kw));
    c.b = add(h.b, size_t(h.cout));
    return c;
  }
};

HostConv load_conv(Source& d, const std::string& name, int cin, int cout, int kh, int kw, int s = 1,
                   int ph = 0, int pw = 0) {
  HostConv c;
  c.cin = cin, c.cout = cout, c.kh = kh, c.kw = kw, c.s = s, c.ph = ph, c.pw = pw;
  const std::vector<float> w = get(d, name + ".conv.weight", {cout, cin, kh, kw});
  const std::vector<float> g = get(d, name + ".bn.weight", {cout});
  const std::vector<float> beta = get(d, name + ".bn.bias", {cout});
  const std::vector<float> mean = get(d, name + ".bn.running_mean", {cout});
  const std::vector<float> var = get(d, name + ".bn.running_var", {cout});
  if (d.sizing) return c;  // the shapes are checked; nothing to fold
  const size_t per = size_t(cin) * kh * kw;
  c.w.resize(w.size());
  c.b.resize(cout);
  for (int o = 0; o < cout; ++o) {
    UVIT_CHECK(var[o] >= 0 && std::isfinite(var[o]), d.file, ": ", name,
               ".bn.running_var has a negative or non-finite entry");
    const double scale = double(g[o]) / std::sqrt(double(var[o]) + 1e-3);  // BN eps 0.001
    for (size_t i = 0; i < per; ++i) c.w[o * per + i] = float(double(w[o * per + i]) * scale);
    c.b[o] = float(double(beta[o]) - double(mean[o]) * scale);
  }
  return c;
}

// 1x1 convolutions on the same input stacked along the output channels.
HostConv fuse(const std::vector<HostConv>& cs) {
  HostConv f = cs[0];
  for (size_t i = 1; i < cs.size(); ++i) {
    f.cout += cs[i].cout;
    f.w.insert(f.w.end(), cs[i].w.begin(), cs[i].w.end());
    f.b.insert(f.b.end(), cs[i].b.begin(), cs[i].b.end());
  }
  return f;
}

// Splits a pool-branch conv into its weights (bias 0, for the fused conv) and its bias.
HostConv without_bias(HostConv c, std::vector<float>* bias) {
  *bias = c.b;
  std::fill(c.b.begin(), c.b.end(), 0.0f);
  return c;
}

// The backend, its weight arena and the number of images n of a forward pass. Activations are
// NCHW [n, C, H, W]; a branch writes (and reads) a channel slice of a wider tensor, so its images
// are that tensor's C*H*W floats apart (the strides below).
struct Ctx {
  Backend& be;
  const float* P;
  int n;
};

// y = conv(x) with the folded bias, then ReLU on the first relu_ch output channels (all: -1) of
// each image. xs, ys: floats between images of x and y (0: dense).
void run(const Ctx& m, const Conv& c, const float* x, int H, int W, float* y, int relu_ch = -1,
         long xs = 0, long ys = 0) {
  Conv2dShape s;
  s.B = m.n, s.Cin = c.cin, s.H = H, s.W = W, s.Cout = c.cout, s.kh = c.kh, s.kw = c.kw;
  s.sh = s.sw = c.s;
  s.pt = s.pb = c.ph;
  s.pl = s.pr = c.pw;
  s.x_stride = xs, s.y_stride = ys;
  m.be.conv2d(s, x, m.P + c.w, m.P + c.b, y);
  m.be.channel_bias_act(y, nullptr, m.n, relu_ch < 0 ? c.cout : relu_ch, s.out_h() * s.out_w(),
                        true, s.out_stride());
}

// The avg-pool branches run their 1x1 conv first, inside the block's fused 1x1 conv (without
// bias): a 1x1 conv and an average pool commute, the pool's weights summing to 1 at every pixel
// (count_include_pad=False), so relu(conv(avgpool(x)) + b) = relu(avgpool(conv(x)) + b) with 4-7x
// fewer channels to pool. This adds the bias and the ReLU after the pool.
void pool_bias_relu(const Ctx& m, const float* z, long zs, size_t b, int C, int H, int W, float* y,
                    long ys) {
  m.be.pool2d(z, y, m.n, C, H, W, 3, 1, 1, false, zs, ys);
  m.be.channel_bias_act(y, m.P + b, m.n, C, H * W, true, ys);
}

// The branch 1x1 conv's channels [0, C) of the fused output t (ts floats per image) are the
// block output's first C channels (os floats per image).
void copy_first(const Ctx& m, float* out, long os, const float* t, long ts, long C_hw) {
  m.be.copy_2d(out, os, t, ts, m.n, C_hw);
}

// Each block's scratch is given in floats per image: n images need n times as much.
struct BlockA {  // Mixed_5b/5c/5d (InceptionA, FID pool: avg excluding padding)
  Conv fused, b5_2, d2, d3;
  size_t pool_b = 0;
  int cin = 0, pf = 0;
  BlockA(Source& d, Packer& pk, const std::string& n, int cin_, int pf_) : cin(cin_), pf(pf_) {
    std::vector<float> pb;
    fused = pk.add(fuse({load_conv(d, n + ".branch1x1", cin, 64, 1, 1),
                         load_conv(d, n + ".branch5x5_1", cin, 48, 1, 1),
                         load_conv(d, n + ".branch3x3dbl_1", cin, 64, 1, 1),
                         without_bias(load_conv(d, n + ".branch_pool", cin, pf, 1, 1), &pb)}));
    pool_b = pk.add(pb, size_t(pf));
    b5_2 = pk.add(load_conv(d, n + ".branch5x5_2", 48, 64, 5, 5, 1, 2, 2));
    d2 = pk.add(load_conv(d, n + ".branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1));
    d3 = pk.add(load_conv(d, n + ".branch3x3dbl_3", 96, 96, 3, 3, 1, 1, 1));
  }
  // scratch: 336 * H * W floats per image at most.
  void operator()(const Ctx& m, const float* x, int H, int W, float* out, float* scratch) const {
    const long hw = long(H) * W, ts = (176 + pf) * hw, os = (224 + pf) * hw;
    float *t = scratch, *u = t + m.n * ts;
    run(m, fused, x, H, W, t, 176);
    copy_first(m, out, os, t, ts, 64 * hw);
    run(m, b5_2, t + 64 * hw, H, W, out + 64 * hw, -1, ts, os);
    run(m, d2, t + 112 * hw, H, W, u, -1, ts);
    run(m, d3, u, H, W, out + 128 * hw, -1, 0, os);
    pool_bias_relu(m, t + 176 * hw, ts, pool_b, pf, H, W, out + 224 * hw, os);
  }
};

struct BlockB {  // Mixed_6a (InceptionB)
  Conv b3, d1, d2, d3;
  BlockB(Source& d, Packer& pk, const std::string& n) {
    b3 = pk.add(load_conv(d, n + ".branch3x3", 288, 384, 3, 3, 2));
    d1 = pk.add(load_conv(d, n + ".branch3x3dbl_1", 288, 64, 1, 1));
    d2 = pk.add(load_conv(d, n + ".branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1));
    d3 = pk.add(load_conv(d, n + ".branch3x3dbl_3", 96, 96, 3, 3, 2));
  }
  // scratch: 160 * H * W floats per image.
  void operator()(const Ctx& m, const float* x, int H, int W, float* out, float* scratch) const {
    const long ohw = long(b3.out_h(H)) * b3.out_w(W), hw = long(H) * W, os = 768 * ohw;
    float *t = scratch, *u = t + m.n * 64 * hw;
    run(m, b3, x, H, W, out, -1, 0, os);
    run(m, d1, x, H, W, t);
    run(m, d2, t, H, W, u);
    run(m, d3, u, H, W, out + 384 * ohw, -1, 0, os);
    m.be.pool2d(x, out + 480 * ohw, m.n, 288, H, W, 3, 2, 0, true, 0, os);
  }
};

struct BlockC {  // Mixed_6b..6e (InceptionC, FID pool: avg excluding padding)
  Conv fused, s2, s3, d2, d3, d4, d5;
  size_t pool_b = 0;
  int c7 = 0;
  BlockC(Source& d, Packer& pk, const std::string& n, int c7_) : c7(c7_) {
    std::vector<float> pb;
    fused = pk.add(fuse({load_conv(d, n + ".branch1x1", 768, 192, 1, 1),
                         load_conv(d, n + ".branch7x7_1", 768, c7, 1, 1),
                         load_conv(d, n + ".branch7x7dbl_1", 768, c7, 1, 1),
                         without_bias(load_conv(d, n + ".branch_pool", 768, 192, 1, 1), &pb)}));
    pool_b = pk.add(pb, 192);
    s2 = pk.add(load_conv(d, n + ".branch7x7_2", c7, c7, 1, 7, 1, 0, 3));
    s3 = pk.add(load_conv(d, n + ".branch7x7_3", c7, 192, 7, 1, 1, 3, 0));
    d2 = pk.add(load_conv(d, n + ".branch7x7dbl_2", c7, c7, 7, 1, 1, 3, 0));
    d3 = pk.add(load_conv(d, n + ".branch7x7dbl_3", c7, c7, 1, 7, 1, 0, 3));
    d4 = pk.add(load_conv(d, n + ".branch7x7dbl_4", c7, c7, 7, 1, 1, 3, 0));
    d5 = pk.add(load_conv(d, n + ".branch7x7dbl_5", c7, 192, 1, 7, 1, 0, 3));
  }
  // scratch: 1152 * H * W floats per image at most.
  void operator()(const Ctx& m, const float* x, int H, int W, float* out, float* scratch) const {
    const long hw = long(H) * W, ts = (384 + 2 * c7) * hw, os = 768 * hw;
    float *t = scratch, *u = t + m.n * ts, *v = u + m.n * 192 * hw;  // u, v: c7 <= 192 channels
    run(m, fused, x, H, W, t, 192 + 2 * c7);
    copy_first(m, out, os, t, ts, 192 * hw);
    run(m, s2, t + 192 * hw, H, W, u, -1, ts);
    run(m, s3, u, H, W, out + 192 * hw, -1, 0, os);
    run(m, d2, t + (192 + c7) * hw, H, W, u, -1, ts);
    run(m, d3, u, H, W, v);
    run(m, d4, v, H, W, u);
    run(m, d5, u, H, W, out + 384 * hw, -1, 0, os);
    pool_bias_relu(m, t + (192 + 2 * c7) * hw, ts, pool_b, 192, H, W, out + 576 * hw, os);
  }
};

struct BlockD {  // Mixed_7a (InceptionD)
  Conv fused, b3_2, s2, s3, s4;
  BlockD(Source& d, Packer& pk, const std::string& n) {
    fused = pk.add(fuse({load_conv(d, n + ".branch3x3_1", 768, 192, 1, 1),
                         load_conv(d, n + ".branch7x7x3_1", 768, 192, 1, 1)}));
    b3_2 = pk.add(load_conv(d, n + ".branch3x3_2", 192, 320, 3, 3, 2));
    s2 = pk.add(load_conv(d, n + ".branch7x7x3_2", 192, 192, 1, 7, 1, 0, 3));
    s3 = pk.add(load_conv(d, n + ".branch7x7x3_3", 192, 192, 7, 1, 1, 3, 0));
    s4 = pk.add(load_conv(d, n + ".branch7x7x3_4", 192, 192, 3, 3, 2));
  }
  // scratch: 768 * H * W floats per image.
  void operator()(const Ctx& m, const float* x, int H, int W, float* out, float* scratch) const {
    const long hw = long(H) * W, ohw = long(b3_2.out_h(H)) * b3_2.out_w(W);
    const long ts = 384 * hw, os = 1280 * ohw;
    float *t = scratch, *u = t + m.n * ts, *v = u + m.n * 192 * hw;
    run(m, fused, x, H, W, t);
    run(m, b3_2, t, H, W, out, -1, ts, os);
    run(m, s2, t + 192 * hw, H, W, u, -1, ts);
    run(m, s3, u, H, W, v);
    run(m, s4, v, H, W, out + 320 * ohw, -1, 0, os);
    m.be.pool2d(x, out + 512 * ohw, m.n, 768, H, W, 3, 2, 0, true, 0, os);
  }
};

struct BlockE {  // Mixed_7b (avg pool excluding padding) and Mixed_7c (max pool)
  Conv fused, a2a, a2b, d2, d3a, d3b, pool;
  size_t pool_b = 0;
  int cin = 0;
  bool max_pool = false;
  BlockE(Source& d, Packer& pk, const std::string& n, int cin_, bool max_pool_)
      : cin(cin_), max_pool(max_pool_) {
    std::vector<HostConv> ones = {load_conv(d, n + ".branch1x1", cin, 320, 1, 1),
                                  load_conv(d, n + ".branch3x3_1", cin, 384, 1, 1),
                                  load_conv(d, n + ".branch3x3dbl_1", cin, 448, 1, 1)};
    HostConv p = load_conv(d, n + ".branch_pool", cin, 192, 1, 1);
    if (max_pool) {  // max pool is not linear: its conv runs after it
      pool = pk.add(p);
    } else {
      std::vector<float> pb;
      ones.push_back(without_bias(p, &pb));
      pool_b = pk.add(pb, 192);
    }
    fused = pk.add(fuse(ones));
    a2a = pk.add(load_conv(d, n + ".branch3x3_2a", 384, 384, 1, 3, 1, 0, 1));
    a2b = pk.add(load_conv(d, n + ".branch3x3_2b", 384, 384, 3, 1, 1, 1, 0));
    d2 = pk.add(load_conv(d, n + ".branch3x3dbl_2", 448, 384, 3, 3, 1, 1, 1));
    d3a = pk.add(load_conv(d, n + ".branch3x3dbl_3a", 384, 384, 1, 3, 1, 0, 1));
    d3b = pk.add(load_conv(d, n + ".branch3x3dbl_3b", 384, 384, 3, 1, 1, 1, 0));
  }
  // scratch: 3392 * H * W floats per image at most.
  void operator()(const Ctx& m, const float* x, int H, int W, float* out, float* scratch) const {
    const long hw = long(H) * W, ts = fused.cout * hw, os = 2048 * hw;
    float *t = scratch, *u = t + m.n * 1344 * hw;
    run(m, fused, x, H, W, t, 1152);
    copy_first(m, out, os, t, ts, 320 * hw);
    run(m, a2a, t + 320 * hw, H, W, out + 320 * hw, -1, ts, os);
    run(m, a2b, t + 320 * hw, H, W, out + 704 * hw, -1, ts, os);
    run(m, d2, t + 704 * hw, H, W, u, -1, ts);
    run(m, d3a, u, H, W, out + 1088 * hw, -1, 0, os);
    run(m, d3b, u, H, W, out + 1472 * hw, -1, 0, os);
    if (max_pool) {
      m.be.pool2d(x, u, m.n, cin, H, W, 3, 1, 1, true);
      run(m, pool, u, H, W, out + 1856 * hw, -1, 0, os);
    } else {
      pool_bias_relu(m, t + 1152 * hw, ts, pool_b, 192, H, W, out + 1856 * hw, os);
    }
  }
};

// Images per chunk on a device backend: the network runs each layer on a chunk at once (32 images:
// ~0.5 GB of activations; fewer small launches and wider GEMMs than one image at a time). The CPU
// runs one image at a time, its fastest (the GEMMs already fill the cores) and leanest way.
constexpr int kDeviceBatch = 32;

// The chunk size on `be`: $UVIT_INCEPTION_BATCH (a positive count, e.g. for tests of the
// batched path on the CPU) if set, else 1 on the CPU and kDeviceBatch elsewhere.
int chunk_images(const Backend& be) {
  if (const char* e = std::getenv("UVIT_INCEPTION_BATCH"); e && *e) {
    char* end = nullptr;
    const long v = std::strtol(e, &end, 10);
    UVIT_CHECK(*end == 0 && v >= 1 && v <= 4096, "UVIT_INCEPTION_BATCH=", e,
               ": expected a number of images from 1 to 4096");
    return int(v);
  }
  return ParamStage::host_memory(be) ? 1 : kDeviceBatch;
}

}  // namespace

struct FidInception::Impl {
  std::unique_ptr<Backend> own;  // the internal CPU backend of the backend-less constructor
  Backend* be = nullptr;
  Conv c1a, c2a, c2b, c3b, c4a;
  std::vector<BlockA> a;
  std::vector<BlockB> b;
  std::vector<BlockC> c;
  std::vector<BlockD> d;
  std::vector<BlockE> e;
  size_t fc = 0;  // [1008, 2048]

  // Backend memory: the weights, and a workspace for nb images reused across calls (the resized
  // input, two ping-pong activation buffers, the blocks' scratch, pool3 and logits); the sizes
  // below are per image. raw: the uploaded images before the resize, grown on demand.
  static constexpr long kIn = 3L * kSize * kSize;
  static constexpr long kBuf = 64L * 147 * 147;     // the largest activation (Conv2d_2b_3x3)
  static constexpr long kScratch = 336L * 35 * 35;  // the largest block scratch (BlockA)
  static constexpr long kSp = long(kSpatialChannels) * kSpatialSide * kSpatialSide;
  static constexpr long kWs = kIn + 2 * kBuf + kScratch + kDims + kClasses + kSp;
  // The raw input buffer's cap in floats (256 MiB): large images go through in smaller chunks.
  static constexpr long kRawCap = 64L << 20;
  int nb = 1;  // images per chunk
  InceptionInput input = InceptionInput::PytorchFid;
  float* params = nullptr;
  size_t num_params = 0;
  float* ws = nullptr;
  float* raw = nullptr;
  long raw_floats = 0;
  mutable std::mutex mu;

  ~Impl() {
    if (params) be->free_bytes(params);
    if (ws) be->free_bytes(ws);
    if (raw) be->free_bytes(raw);
  }

  void build(Source& src, Packer& pk) {
    c1a = pk.add(load_conv(src, "Conv2d_1a_3x3", 3, 32, 3, 3, 2));
    c2a = pk.add(load_conv(src, "Conv2d_2a_3x3", 32, 32, 3, 3));
    c2b = pk.add(load_conv(src, "Conv2d_2b_3x3", 32, 64, 3, 3, 1, 1, 1));
    c3b = pk.add(load_conv(src, "Conv2d_3b_1x1", 64, 80, 1, 1));
    c4a = pk.add(load_conv(src, "Conv2d_4a_3x3", 80, 192, 3, 3));
    a.emplace_back(src, pk, "Mixed_5b", 192, 32);
    a.emplace_back(src, pk, "Mixed_5c", 256, 64);
    a.emplace_back(src, pk, "Mixed_5d", 288, 64);
    b.emplace_back(src, pk, "Mixed_6a");
    c.emplace_back(src, pk, "Mixed_6b", 128);
    c.emplace_back(src, pk, "Mixed_6c", 160);
    c.emplace_back(src, pk, "Mixed_6d", 160);
    c.emplace_back(src, pk, "Mixed_6e", 192);
    d.emplace_back(src, pk, "Mixed_7a");
    e.emplace_back(src, pk, "Mixed_7b", 1280, false);
    e.emplace_back(src, pk, "Mixed_7c", 2048, true);
    fc = pk.add(get(src, "fc.weight", {kClasses, kDims}), size_t(kClasses) * kDims);
  }

  // m.n images [n, 3, 299, 299] in [-1, 1] -> pool3 [n, 2048]. p, q: ping-pong buffers of n*kBuf
  // floats; scr: n*kScratch floats. sp (may be nullptr): [n, 7, 17, 17], the first 7 channels of
  // Mixed_6d, which are its branch1x1 output (the first of the concatenated branches).
  void features(const Ctx& m, const float* x, float* pool3, float* p, float* q, float* scr,
                float* sp) const {
    Backend& be = m.be;
    const int n = m.n;
    run(m, c1a, x, 299, 299, p);                      // 32 x 149 x 149
    run(m, c2a, p, 149, 149, q);                      // 32 x 147 x 147
    run(m, c2b, q, 147, 147, p);                      // 64 x 147 x 147
    be.pool2d(p, q, n, 64, 147, 147, 3, 2, 0, true);  // 64 x 73 x 73
    run(m, c3b, q, 73, 73, p);                        // 80 x 73 x 73
    run(m, c4a, p, 73, 73, q);                        // 192 x 71 x 71
    be.pool2d(q, p, n, 192, 71, 71, 3, 2, 0, true);   // 192 x 35 x 35
    for (const BlockA& blk : a) {
      blk(m, p, 35, 35, q, scr);
      std::swap(p, q);
    }
    b[0](m, p, 35, 35, q, scr);  // 768 x 17 x 17
    std::swap(p, q);
    for (size_t i = 0; i < c.size(); ++i) {
      c[i](m, p, 17, 17, q, scr);
      std::swap(p, q);
      if (i == 2 && sp) be.copy_2d(sp, kSp, p, 768L * 17 * 17, n, kSp);  // Mixed_6d
    }
    d[0](m, p, 17, 17, q, scr);  // 1280 x 8 x 8
    std::swap(p, q);
    for (const BlockE& blk : e) {
      blk(m, p, 8, 8, q, scr);
      std::swap(p, q);
    }
    be.global_avg_pool(p, pool3, n * kDims, 64);
  }
};

namespace {
// Loads the weights of r into m (whose backend is set) and allocates the workspace for m.nb
// images. A sizing build (no reads, no folds: the architecture's sizes) measures the packed
// weights; the second build reads each tensor once and folds it into place: on the CPU straight
// into the backend buffer, elsewhere into one host block that is then uploaded. So no copy of the
// file's arrays is held.
void init(FidInception::Impl& m, TensorReader& r, const std::string& file) {
  Backend& be = *m.be;
  UVIT_CHECK(be.act_bytes() == sizeof(float), file,
             ": the FID Inception needs fp32 activations (precision fp32 or tf32), got a ",
             be.precision(), " ", be.name(), " backend");
  Source src;
  src.file = file;
  src.reader = &r;
  for (size_t i = 0; i < r.tensors().size(); ++i) src.index.emplace(r.tensors()[i].name, i);
  src.read.assign(r.tensors().size(), false);
  src.finite.assign(r.tensors().size(), true);
  src.sizing = true;
  Packer count;
  FidInception::Impl().build(src, count);
  src.sizing = false;
  m.params = be.alloc(count.size);
  m.num_params = count.size;
  std::vector<float> host;
  Packer pk;
  if (ParamStage::host_memory(be)) {
    pk.data = m.params;
  } else {
    host.resize(count.size);
    pk.data = host.data();
  }
  m.build(src, pk);
  check_finite(src);
  m.nb = chunk_images(be);
  m.ws = be.alloc(size_t(m.nb) * FidInception::Impl::kWs);
  if (!host.empty()) be.upload(m.params, host.data(), host.size() * sizeof(float));
}

void init(FidInception::Impl& m, const NamedArrays& sd, const std::string& file) {
  ArrayReader r(sd, file);
  init(m, r, file);
}
}  // namespace

const char* inception_input_name(InceptionInput in) {
  return in == InceptionInput::Tf ? "tf" : "pytorch-fid";
}

InceptionInput parse_inception_input(const std::string& s, const std::string& what) {
  if (s == "pytorch-fid") return InceptionInput::PytorchFid;
  if (s == "tf") return InceptionInput::Tf;
  throw Error(what + ": unknown Inception input pipeline '" + s + "' (pytorch-fid or tf)");
}

void FidInception::set_input(InceptionInput in) { impl_->input = in; }
InceptionInput FidInception::input() const { return impl_->input; }

uint64_t FidInception::weights_hash() const {
  return hash_backend_floats(*impl_->be, impl_->params, impl_->num_params, kWeightsHashSeed);
}

FidInception::FidInception(const NamedArrays& sd, const std::string& file)
    : impl_(std::make_unique<Impl>()) {
  impl_->own = make_cpu_backend();
  impl_->be = impl_->own.get();
  init(*impl_, sd, file);
}

FidInception::FidInception(const NamedArrays& sd, Backend& be, const std::string& file)
    : impl_(std::make_unique<Impl>()) {
  impl_->be = &be;
  init(*impl_, sd, file);
}

FidInception::~FidInception() = default;
FidInception::FidInception(FidInception&&) noexcept = default;

FidInception::FidInception(TensorReader& r, Backend* be) : impl_(std::make_unique<Impl>()) {
  if (!be) impl_->own = make_cpu_backend();
  impl_->be = be ? be : impl_->own.get();
  init(*impl_, r, r.path());
}

FidInception FidInception::load(const std::string& path) {
  return FidInception(*open_weights(path), nullptr);
}

FidInception FidInception::load(const std::string& path, Backend& be) {
  return FidInception(*open_weights(path), &be);
}

NamedArrays FidInception::random_state_dict(uint64_t seed) {
  std::map<std::string, Array> made;
  std::mt19937_64 rng(seed);
  Source src;
  src.file = "random";
  src.made = &made;
  src.rng = &rng;
  Packer pk;
  Impl().build(src, pk);
  NamedArrays sd;
  for (auto& [k, v] : made) sd.emplace_back(k, std::move(v));
  return sd;
}

void FidInception::forward(const float* x, int B, int H, int W, float* pool3, float* logits,
                           float* spatial) const {
  UVIT_CHECK(B >= 0 && H >= 1 && W >= 1, "inception: bad input size ", B, "x3x", H, "x", W);
  const long in = 3L * H * W;
  std::lock_guard<std::mutex> lock(impl_->mu);
  // oneDNN's blocked convolutions keep one summation order at any thread count (the plain-nchw
  // default does not), at no extra CPU here: docs/cli.md "Reproducibility", docs/benchmarks.md.
  const nn::ConvImplScope same_bits(nn::ConvImpl::OneDnn);
  Impl& m = *impl_;
  Backend& be = *m.be;
  const int nb = int(std::clamp<long>(Impl::kRawCap / in, 1, m.nb));
  if (B > 0 && m.raw_floats < std::min<long>(B, nb) * in) {
    if (m.raw) be.free_bytes(m.raw);
    m.raw = nullptr, m.raw_floats = 0;
    m.raw = be.alloc(size_t(std::min<long>(B, nb) * in));
    m.raw_floats = std::min<long>(B, nb) * in;
  }
  for (int i0 = 0; i0 < B; i0 += nb) {
    const int n = std::min(nb, B - i0);
    const Ctx ctx{be, m.params, n};
    // The workspace of nb images, carved for n.
    float *r = m.ws, *p = r + n * Impl::kIn, *q = p + n * Impl::kBuf, *scr = q + n * Impl::kBuf;
    float *f = scr + n * Impl::kScratch, *l = f + n * kDims, *sp = l + n * kClasses;
    be.upload(m.raw, x + i0 * in, size_t(n * in) * sizeof(float));
    // Bilinear to 299x299, then 2x - 1 (pytorch-fid's normalize_input), or TF1's resize of [0, 255]
    // and (y - 128) * 0.0078125 = y * 2^-7 - 1 (the same fp32 bits: the power of two is exact).
    if (m.input == InceptionInput::Tf)
      be.resize_bilinear(m.raw, r, 3 * n, H, W, kSize, kSize, 0.0078125f, -1.f, true);
    else
      be.resize_bilinear(m.raw, r, 3 * n, H, W, kSize, kSize, 2.f, -1.f);
    m.features(ctx, r, f, p, q, scr, spatial ? sp : nullptr);
    be.download(pool3 + long(i0) * kDims, f, size_t(n) * kDims * sizeof(float));
    if (logits) {  // l[n, 1008] = pool3 fc^T
      be.gemm(false, true, n, kClasses, kDims, 1.f, f, kDims, m.params + m.fc, kDims, 0.f, l,
              kClasses);
      be.download(logits + long(i0) * kClasses, l, size_t(n) * kClasses * sizeof(float));
    }
    if (spatial) {  // CHW on the backend -> the evaluator's HWC
      std::vector<float> chw(size_t(n) * Impl::kSp);
      be.download(chw.data(), sp, chw.size() * sizeof(float));
      constexpr int C = kSpatialChannels, HW = kSpatialSide * kSpatialSide;
      for (int i = 0; i < n; ++i)
        for (int k = 0; k < HW; ++k)
          for (int ch = 0; ch < C; ++ch)
            spatial[(long(i0) + i) * Impl::kSp + k * C + ch] =
                chw[size_t(i) * Impl::kSp + ch * HW + k];
    }
  }
}

void FidInception::forward_u8(const uint8_t* hwc, int B, int H, int W, int C, float* pool3,
                              float* logits, float* spatial) const {
  UVIT_CHECK(C == 1 || C == 3, "inception: images must have 1 or 3 channels, got ", C);
  UVIT_CHECK(B >= 0 && H >= 1 && W >= 1, "inception: bad input size ", B, "x", H, "x", W, "x", C);
  const long hw = long(H) * W;
  const int nb = impl_->nb;  // forward's chunk: one conversion buffer of nb images
  // The TF graph takes the uint8 values as float32 [0, 255] (the evaluator's astype(np.float32)).
  const float div = impl_->input == InceptionInput::Tf ? 1.0f : 255.0f;
  std::vector<float> x(size_t(std::min(B, nb)) * 3 * hw);
  for (int i0 = 0; i0 < B; i0 += nb) {
    const int n = std::min(nb, B - i0);
    for (int i = 0; i < n; ++i) {
      const uint8_t* im = hwc + (i0 + i) * hw * C;
      float* xi = x.data() + i * 3 * hw;
      for (int c = 0; c < 3; ++c)
        for (long k = 0; k < hw; ++k) xi[c * hw + k] = float(im[k * C + (C == 3 ? c : 0)]) / div;
    }
    forward(x.data(), n, H, W, pool3 + long(i0) * kDims,
            logits ? logits + long(i0) * kClasses : nullptr,
            spatial ? spatial + long(i0) * kSpatialDims : nullptr);
  }
}

}  // namespace uvit
