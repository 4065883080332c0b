// The FID Inception-v3 (SPEC 17): weight loading with BatchNorm folded into the convolutions, and
// the forward pass, one image at a time so that branch outputs are written straight into their
// channel slice of the concatenated block output (no copies), and the 1x1 convolutions that read
// the same block input run as one fused convolution.
#include "uvit/inception.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>

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

// A convolution with its BatchNorm folded in, followed by ReLU (torchvision BasicConv2d).
struct Conv {
  int cin = 0, cout = 0, kh = 1, kw = 1, s = 1, ph = 0, pw = 0;
  std::vector<float> w, b;
  int out_h(int H) const { return (H + 2 * ph - kh) / s + 1; }
  int out_w(int W) const { return (W + 2 * pw - kw) / s + 1; }
};

using Dict = std::map<std::string, const Array*>;

const Array& get(const Dict& d, const std::string& file, const std::string& key,
                 const std::vector<int64_t>& shape) {
  auto it = d.find(key);
  UVIT_CHECK(it != d.end(), file, ": missing tensor ", key,
             " (expected the torchvision Inception3 layout of ", kInceptionWeightsName, ")");
  UVIT_CHECK(it->second->shape == shape, file, ": ", key, " has shape ",
             shape_str(it->second->shape), ", expected ", shape_str(shape));
  return *it->second;
}

Conv load_conv(const Dict& d, const std::string& file, const std::string& name, int cin, int cout,
               int kh, int kw, int s = 1, int ph = 0, int pw = 0) {
  Conv c;
  c.cin = cin, c.cout = cout, c.kh = kh, c.kw = kw, c.s = s, c.ph = ph, c.pw = pw;
  const std::vector<float> w = get(d, file, name + ".conv.weight", {cout, cin, kh, kw}).to_f32();
  const std::vector<float> g = get(d, file, name + ".bn.weight", {cout}).to_f32();
  const std::vector<float> beta = get(d, file, name + ".bn.bias", {cout}).to_f32();
  const std::vector<float> mean = get(d, file, name + ".bn.running_mean", {cout}).to_f32();
  const std::vector<float> var = get(d, file, name + ".bn.running_var", {cout}).to_f32();
  const size_t per = size_t(cin) * kh * kw;
  c.w.resize(w.size());
  c.b.resize(cout);
  for (int o = 0; o < cout; ++o) {
    UVIT_CHECK(var[o] >= 0 && std::isfinite(var[o]), file, ": ", name,
               ".bn.running_var has a negative or non-finite entry");
    const double scale = double(g[o]) / std::sqrt(double(var[o]) + 1e-3);  // BN eps 0.001
    for (size_t i = 0; i < per; ++i) c.w[o * per + i] = float(double(w[o * per + i]) * scale);
    c.b[o] = float(double(beta[o]) - double(mean[o]) * scale);
  }
  return c;
}

// 1x1 convolutions on the same input stacked along the output channels.
Conv fuse(const std::vector<Conv>& cs) {
  Conv f = cs[0];
  for (size_t i = 1; i < cs.size(); ++i) {
    f.cout += cs[i].cout;
    f.w.insert(f.w.end(), cs[i].w.begin(), cs[i].w.end());
    f.b.insert(f.b.end(), cs[i].b.begin(), cs[i].b.end());
  }
  return f;
}

// y = conv(x) with the folded bias, then ReLU on the first relu_ch output channels (all: -1).
void run(const Conv& c, const float* x, int H, int W, float* y, int relu_ch = -1) {
  nn::Conv2dShape s;
  s.B = 1, s.Cin = c.cin, s.H = H, s.W = W, s.Cout = c.cout, s.kh = c.kh, s.kw = c.kw;
  s.sh = s.sw = c.s;
  s.pt = s.pb = c.ph;
  s.pl = s.pr = c.pw;
  nn::conv2d(s, x, c.w.data(), c.b.data(), y);
  const long n = long(relu_ch < 0 ? c.cout : relu_ch) * s.out_h() * s.out_w();
#pragma omp parallel for simd schedule(static)
  for (long i = 0; i < n; ++i) y[i] = std::max(y[i], 0.0f);
}

// The avg-pool branches run their 1x1 conv first, inside the block's fused 1x1 conv (without
// bias): a 1x1 conv and an average pool commute, the pool's weights summing to 1 at every pixel
// (count_include_pad=False), so relu(conv(avgpool(x)) + b) = relu(avgpool(conv(x)) + b) with 4-7x
// fewer channels to pool. This adds the bias and the ReLU after the pool.
void pool_bias_relu(const float* z, const std::vector<float>& b, int H, int W, float* y) {
  const int C = int(b.size());
  nn::pool2d(z, y, C, H, W, 3, 1, 1, false);
  const long hw = long(H) * W;
#pragma omp parallel for schedule(static)
  for (int c = 0; c < C; ++c)
    for (long i = 0; i < hw; ++i) y[c * hw + i] = std::max(y[c * hw + i] + b[c], 0.0f);
}

// Splits a pool-branch conv into its weights (bias 0, for the fused conv) and its bias.
Conv without_bias(Conv c, std::vector<float>* bias) {
  *bias = c.b;
  std::fill(c.b.begin(), c.b.end(), 0.0f);
  return c;
}

struct BlockA {  // Mixed_5b/5c/5d (InceptionA, FID pool: avg excluding padding)
  Conv fused, b5_2, d2, d3;
  std::vector<float> pool_b;
  int cin = 0, pf = 0;
  BlockA(const Dict& d, const std::string& f, const std::string& n, int cin_, int pf_)
      : cin(cin_), pf(pf_) {
    fused = fuse({load_conv(d, f, n + ".branch1x1", cin, 64, 1, 1),
                  load_conv(d, f, n + ".branch5x5_1", cin, 48, 1, 1),
                  load_conv(d, f, n + ".branch3x3dbl_1", cin, 64, 1, 1),
                  without_bias(load_conv(d, f, n + ".branch_pool", cin, pf, 1, 1), &pool_b)});
    b5_2 = load_conv(d, f, n + ".branch5x5_2", 48, 64, 5, 5, 1, 2, 2);
    d2 = load_conv(d, f, n + ".branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1);
    d3 = load_conv(d, f, n + ".branch3x3dbl_3", 96, 96, 3, 3, 1, 1, 1);
  }
  // scratch: 336 * H * W floats at most.
  void operator()(const float* x, int H, int W, float* out, float* scratch) const {
    const long hw = long(H) * W;
    float *t = scratch, *u = t + (176 + pf) * hw;
    run(fused, x, H, W, t, 176);
    std::copy(t, t + 64 * hw, out);
    run(b5_2, t + 64 * hw, H, W, out + 64 * hw);
    run(d2, t + 112 * hw, H, W, u);
    run(d3, u, H, W, out + 128 * hw);
    pool_bias_relu(t + 176 * hw, pool_b, H, W, out + 224 * hw);
  }
};

struct BlockB {  // Mixed_6a (InceptionB)
  Conv b3, d1, d2, d3;
  BlockB(const Dict& d, const std::string& f, const std::string& n) {
    b3 = load_conv(d, f, n + ".branch3x3", 288, 384, 3, 3, 2);
    d1 = load_conv(d, f, n + ".branch3x3dbl_1", 288, 64, 1, 1);
    d2 = load_conv(d, f, n + ".branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1);
    d3 = load_conv(d, f, n + ".branch3x3dbl_3", 96, 96, 3, 3, 2);
  }
  void operator()(const float* x, int H, int W, float* out, float* scratch) const {
    const long ohw = long(b3.out_h(H)) * b3.out_w(W), hw = long(H) * W;
    float *t = scratch, *u = t + 64 * hw;
    run(b3, x, H, W, out);
    run(d1, x, H, W, t);
    run(d2, t, H, W, u);
    run(d3, u, H, W, out + 384 * ohw);
    nn::pool2d(x, out + 480 * ohw, 288, H, W, 3, 2, 0, true);
  }
};

struct BlockC {  // Mixed_6b..6e (InceptionC, FID pool: avg excluding padding)
  Conv fused, s2, s3, d2, d3, d4, d5;
  std::vector<float> pool_b;
  int c7 = 0;
  BlockC(const Dict& d, const std::string& f, const std::string& n, int c7_) : c7(c7_) {
    fused = fuse({load_conv(d, f, n + ".branch1x1", 768, 192, 1, 1),
                  load_conv(d, f, n + ".branch7x7_1", 768, c7, 1, 1),
                  load_conv(d, f, n + ".branch7x7dbl_1", 768, c7, 1, 1),
                  without_bias(load_conv(d, f, n + ".branch_pool", 768, 192, 1, 1), &pool_b)});
    s2 = load_conv(d, f, n + ".branch7x7_2", c7, c7, 1, 7, 1, 0, 3);
    s3 = load_conv(d, f, n + ".branch7x7_3", c7, 192, 7, 1, 1, 3, 0);
    d2 = load_conv(d, f, n + ".branch7x7dbl_2", c7, c7, 7, 1, 1, 3, 0);
    d3 = load_conv(d, f, n + ".branch7x7dbl_3", c7, c7, 1, 7, 1, 0, 3);
    d4 = load_conv(d, f, n + ".branch7x7dbl_4", c7, c7, 7, 1, 1, 3, 0);
    d5 = load_conv(d, f, n + ".branch7x7dbl_5", c7, 192, 1, 7, 1, 0, 3);
  }
  // scratch: 1152 * H * W floats at most.
  void operator()(const float* x, int H, int W, float* out, float* scratch) const {
    const long hw = long(H) * W;
    float *t = scratch, *u = t + (384 + 2 * c7) * hw, *v = u + 192 * hw;
    run(fused, x, H, W, t, 192 + 2 * c7);
    std::copy(t, t + 192 * hw, out);
    run(s2, t + 192 * hw, H, W, u);
    run(s3, u, H, W, out + 192 * hw);
    run(d2, t + (192 + c7) * hw, H, W, u);
    run(d3, u, H, W, v);
    run(d4, v, H, W, u);
    run(d5, u, H, W, out + 384 * hw);
    pool_bias_relu(t + (192 + 2 * c7) * hw, pool_b, H, W, out + 576 * hw);
  }
};

struct BlockD {  // Mixed_7a (InceptionD)
  Conv fused, b3_2, s2, s3, s4;
  BlockD(const Dict& d, const std::string& f, const std::string& n) {
    fused = fuse({load_conv(d, f, n + ".branch3x3_1", 768, 192, 1, 1),
                  load_conv(d, f, n + ".branch7x7x3_1", 768, 192, 1, 1)});
    b3_2 = load_conv(d, f, n + ".branch3x3_2", 192, 320, 3, 3, 2);
    s2 = load_conv(d, f, n + ".branch7x7x3_2", 192, 192, 1, 7, 1, 0, 3);
    s3 = load_conv(d, f, n + ".branch7x7x3_3", 192, 192, 7, 1, 1, 3, 0);
    s4 = load_conv(d, f, n + ".branch7x7x3_4", 192, 192, 3, 3, 2);
  }
  // scratch: 768 * H * W floats.
  void operator()(const float* x, int H, int W, float* out, float* scratch) const {
    const long hw = long(H) * W, ohw = long(b3_2.out_h(H)) * b3_2.out_w(W);
    float *t = scratch, *u = t + 384 * hw, *v = u + 192 * hw;
    run(fused, x, H, W, t);
    run(b3_2, t, H, W, out);
    run(s2, t + 192 * hw, H, W, u);
    run(s3, u, H, W, v);
    run(s4, v, H, W, out + 320 * ohw);
    nn::pool2d(x, out + 512 * ohw, 768, H, W, 3, 2, 0, true);
  }
};

struct BlockE {  // Mixed_7b (avg pool excluding padding) and Mixed_7c (max pool)
  Conv fused, a2a, a2b, d2, d3a, d3b, pool;
  std::vector<float> pool_b;
  int cin = 0;
  bool max_pool = false;
  BlockE(const Dict& d, const std::string& f, const std::string& n, int cin_, bool max_pool_)
      : cin(cin_), max_pool(max_pool_) {
    std::vector<Conv> ones = {load_conv(d, f, n + ".branch1x1", cin, 320, 1, 1),
                              load_conv(d, f, n + ".branch3x3_1", cin, 384, 1, 1),
                              load_conv(d, f, n + ".branch3x3dbl_1", cin, 448, 1, 1)};
    pool = load_conv(d, f, n + ".branch_pool", cin, 192, 1, 1);
    if (!max_pool) ones.push_back(without_bias(pool, &pool_b));  // max pool is not linear
    fused = fuse(ones);
    a2a = load_conv(d, f, n + ".branch3x3_2a", 384, 384, 1, 3, 1, 0, 1);
    a2b = load_conv(d, f, n + ".branch3x3_2b", 384, 384, 3, 1, 1, 1, 0);
    d2 = load_conv(d, f, n + ".branch3x3dbl_2", 448, 384, 3, 3, 1, 1, 1);
    d3a = load_conv(d, f, n + ".branch3x3dbl_3a", 384, 384, 1, 3, 1, 0, 1);
    d3b = load_conv(d, f, n + ".branch3x3dbl_3b", 384, 384, 3, 1, 1, 1, 0);
  }
  // scratch: 3392 * H * W floats at most.
  void operator()(const float* x, int H, int W, float* out, float* scratch) const {
    const long hw = long(H) * W;
    float *t = scratch, *u = t + 1344 * hw;
    run(fused, x, H, W, t, 1152);
    std::copy(t, t + 320 * hw, out);
    run(a2a, t + 320 * hw, H, W, out + 320 * hw);
    run(a2b, t + 320 * hw, H, W, out + 704 * hw);
    run(d2, t + 704 * hw, H, W, u);
    run(d3a, u, H, W, out + 1088 * hw);
    run(d3b, u, H, W, out + 1472 * hw);
    if (max_pool) {
      nn::pool2d(x, u, cin, H, W, 3, 1, 1, true);
      run(pool, u, H, W, out + 1856 * hw);
    } else {
      pool_bias_relu(t + 1152 * hw, pool_b, H, W, out + 1856 * hw);
    }
  }
};

}  // namespace

struct FidInception::Impl {
  Conv c1a, c2a, c2b, c3b, c4a;
  std::vector<BlockA> a;
  std::unique_ptr<BlockB> b;
  std::vector<BlockC> c;
  std::unique_ptr<BlockD> d;
  std::vector<BlockE> e;
  std::vector<float> fc;  // [1008, 2048]

  // Workspace reused across calls (allocating it per image cost page faults and zero-fills):
  // the resized input, two ping-pong activation buffers and the blocks' scratch.
  static constexpr long kIn = 3L * kSize * kSize;
  static constexpr long kBuf = 64L * 147 * 147;     // the largest activation (Conv2d_2b_3x3)
  static constexpr long kScratch = 336L * 35 * 35;  // the largest block scratch (BlockA)
  mutable std::mutex mu;
  mutable std::unique_ptr<float[]> ws;

  // One image [3, 299, 299] in [-1, 1] -> pool3 [2048]. p, q: ping-pong buffers of kBuf floats.
  void features(const float* x, float* pool3, float* p, float* q, float* scr) const {
    run(c1a, x, 299, 299, p);                // 32 x 149 x 149
    run(c2a, p, 149, 149, q);                // 32 x 147 x 147
    run(c2b, q, 147, 147, p);                // 64 x 147 x 147
    nn::pool2d(p, q, 64, 147, 147, 3, 2, 0, true);  // 64 x 73 x 73
    run(c3b, q, 73, 73, p);                  // 80 x 73 x 73
    run(c4a, p, 73, 73, q);                  // 192 x 71 x 71
    nn::pool2d(q, p, 192, 71, 71, 3, 2, 0, true);   // 192 x 35 x 35
    for (const BlockA& blk : a) {
      blk(p, 35, 35, q, scr);
      std::swap(p, q);
    }
    (*b)(p, 35, 35, q, scr);  // 768 x 17 x 17
    std::swap(p, q);
    for (const BlockC& blk : c) {
      blk(p, 17, 17, q, scr);
      std::swap(p, q);
    }
    (*d)(p, 17, 17, q, scr);  // 1280 x 8 x 8
    std::swap(p, q);
    for (const BlockE& blk : e) {
      blk(p, 8, 8, q, scr);
      std::swap(p, q);
    }
    nn::global_avg_pool(p, pool3, kDims, 64);
  }
};

FidInception::FidInception(const NamedArrays& sd, const std::string& file)
    : impl_(std::make_unique<Impl>()) {
  Dict dict;
  for (const auto& [k, v] : sd) dict[k] = &v;
  const Dict& d = dict;
  Impl& m = *impl_;
  m.c1a = load_conv(d, file, "Conv2d_1a_3x3", 3, 32, 3, 3, 2);
  m.c2a = load_conv(d, file, "Conv2d_2a_3x3", 32, 32, 3, 3);
  m.c2b = load_conv(d, file, "Conv2d_2b_3x3", 32, 64, 3, 3, 1, 1, 1);
  m.c3b = load_conv(d, file, "Conv2d_3b_1x1", 64, 80, 1, 1);
  m.c4a = load_conv(d, file, "Conv2d_4a_3x3", 80, 192, 3, 3);
  m.a.emplace_back(d, file, "Mixed_5b", 192, 32);
  m.a.emplace_back(d, file, "Mixed_5c", 256, 64);
  m.a.emplace_back(d, file, "Mixed_5d", 288, 64);
  m.b = std::make_unique<BlockB>(d, file, "Mixed_6a");
  m.c.emplace_back(d, file, "Mixed_6b", 128);
  m.c.emplace_back(d, file, "Mixed_6c", 160);
  m.c.emplace_back(d, file, "Mixed_6d", 160);
  m.c.emplace_back(d, file, "Mixed_6e", 192);
  m.d = std::make_unique<BlockD>(d, file, "Mixed_7a");
  m.e.emplace_back(d, file, "Mixed_7b", 1280, false);
  m.e.emplace_back(d, file, "Mixed_7c", 2048, true);
  m.fc = get(d, file, "fc.weight", {kClasses, kDims}).to_f32();
  for (const auto& [k, v] : sd)
    for (float f : v.dtype == DType::I64 ? std::vector<float>{} : v.to_f32())
      UVIT_CHECK(std::isfinite(f), file, ": tensor ", k, " has non-finite values");
}

FidInception::~FidInception() = default;
FidInception::FidInception(FidInception&&) noexcept = default;

FidInception FidInception::load(const std::string& path) {
  return FidInception(load_weights(path), path);
}

void FidInception::forward(const float* x, int B, int H, int W, float* pool3, float* logits) const {
  UVIT_CHECK(B >= 0 && H >= 1 && W >= 1, "inception: bad input size ", B, "x3x", H, "x", W);
  const long in = 3L * H * W;
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (!impl_->ws) impl_->ws.reset(new float[Impl::kIn + 2 * Impl::kBuf + Impl::kScratch]);
  float *r = impl_->ws.get(), *p = r + Impl::kIn, *q = p + Impl::kBuf, *scr = q + Impl::kBuf;
  for (int i = 0; i < B; ++i) {
    nn::resize_bilinear(x + i * in, r, 3, H, W, kSize, kSize);
    for (long k = 0; k < Impl::kIn; ++k) r[k] = 2 * r[k] - 1;  // pytorch-fid normalize_input
    float* f = pool3 + long(i) * kDims;
    impl_->features(r, f, p, q, scr);
    if (logits) {
      const float* w = impl_->fc.data();
      float* l = logits + long(i) * kClasses;
#pragma omp parallel for schedule(static)
      for (int k = 0; k < kClasses; ++k) {
        double s = 0;
        for (int j = 0; j < kDims; ++j) s += double(w[long(k) * kDims + j]) * f[j];
        l[k] = float(s);
      }
    }
  }
}

void FidInception::forward_u8(const uint8_t* hwc, int B, int H, int W, int C, float* pool3,
                              float* logits) const {
  UVIT_CHECK(C == 1 || C == 3, "inception: images must have 1 or 3 channels, got ", C);
  const long hw = long(H) * W;
  std::vector<float> x(3 * hw);
  for (int i = 0; i < B; ++i) {
    const uint8_t* im = hwc + i * hw * C;
    for (int c = 0; c < 3; ++c)
      for (long k = 0; k < hw; ++k) x[c * hw + k] = float(im[k * C + (C == 3 ? c : 0)]) / 255.0f;
    forward(x.data(), 1, H, W, pool3 + long(i) * kDims,
            logits ? logits + long(i) * kClasses : nullptr);
  }
}

}  // namespace uvit
