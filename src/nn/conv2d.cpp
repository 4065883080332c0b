// 2-D convolution on NCHW fp32. Measured on the autoencoder and Inception shapes (2 Zen 5 cores,
// docs/autoencoder.md): oneDNN's primitive on plain nchw (it runs its own jit im2col+GEMM) beats
// both letting it pick blocked layouts (brgconv in nhwc: the nchw<->nhwc reorders cost more than
// the kernel saves) and our banded im2col + sgemm. 1x1 unpadded stride-1 convolutions are a
// plain GEMM on the input, which beats oneDNN's 1x1 path by 1.3-8x. The other variants stay for
// tests and benchmarks.
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "uvit/error.hpp"
#include "uvit/nn.hpp"

namespace uvit::nn {

namespace {

using dims = dnnl::memory::dims;
using tag = dnnl::memory::format_tag;
constexpr auto f32 = dnnl::memory::data_type::f32;

// The shape, the bias, the kind, for a row band the heights of the whole input and output (0
// otherwise), and the thread count: oneDNN fixes a primitive's threads and blocking when it makes
// it, so one made at another count would not be the one this count makes.
using Key = std::tuple<int, int, int, int, int, int, int, int, int, int, int, int, int, bool, int,
                       int, int, int>;

Key key_of(const Conv2dShape& s, bool bias, ConvImpl impl, int whole_h, int whole_ho) {
  return {s.B,     s.Cin,    s.H,
          s.W,     s.Cout,   s.kh,
          s.kw,    s.sh,     s.sw,
          s.pt,    s.pl,     s.pb,
          s.pr,    bias,     static_cast<int>(impl),
          whole_h, whole_ho, omp_get_max_threads()};
}

// The user's side of a convolution: nchw x and y, or for a row band (whole_h > 0) the rows of an
// nchw tensor of height whole_h (image and channel strides of the whole), and oihw weights.
dnnl::memory::desc nchw_rows(int B, int C, int rows, int W, int whole_h) {
  const dnnl::memory::dim h = whole_h ? whole_h : rows;
  return dnnl::memory::desc({B, C, rows, W}, f32, dims{C * h * W, h * W, W, 1});
}

// One cached primitive with the layouts it chose and its reorders from and to the user's side.
struct Prim {
  dnnl::convolution_forward conv;
  dnnl::memory::desc src, wei, dst;
  bool src_plain = true, wei_plain = true, dst_plain = true;
  dnnl::reorder src_in, dst_out;  // nchw <-> the chosen layouts, made once
  dnnl::memory::desc conv_scratch, in_scratch, out_scratch;  // their scratchpads (Cache::scratch)
  // Reordered weights, reused while the same (pointer, contents checksum) comes back.
  const float* wei_ptr = nullptr;
  uint64_t wei_sum = 0;
  dnnl::memory wei_mem;
};

struct Cache {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  std::map<Key, Prim> prims;
  std::mutex mu;  // one execution at a time: they share `scratch`
  // The primitives' scratchpad, ours (scratchpad_mode::user): oneDNN 2.6's own is per thread, and
  // a primitive made on one thread and run on another (the C API's callers, serve's worker) used
  // the running thread's, which may be smaller: a heap overflow (docs/fuzzing.md, finding 13).
  std::vector<char> scratch;
  // The row bands' buffers (ConvImpl::OneDnnBands): a band's input and output in the layouts its
  // primitive chose, and the weights of the convolution in flight in its layout.
  std::vector<char> band_src, band_dst, band_wei;
  dnnl::memory in(std::vector<char>& buf, const dnnl::memory::desc& d) {
    if (buf.size() < d.get_size() + 64) buf.resize(d.get_size() + 64);
    char* p = buf.data();
    return dnnl::memory(d, engine, p + (-reinterpret_cast<uintptr_t>(p) & 63));  // 64-byte aligned
  }
  dnnl::memory scratch_for(const dnnl::memory::desc& d) { return in(scratch, d); }
};

dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr a;
  a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return a;
}

Cache& cache() {
  static Cache c;
  return c;
}

constexpr size_t kMaxCached = 256;

// A cheap fingerprint of a weight tensor: a pointer alone could be a freed-and-reused buffer
// holding other values. Strided samples (plus the ends) catch every realistic reuse.
uint64_t fingerprint(const float* w, size_t n) {
  uint64_t h = 1469598103934665603ull ^ n;
  const size_t step = std::max<size_t>(1, n / 64);
  auto mix = [&](size_t i) {
    uint32_t u;
    std::memcpy(&u, w + i, 4);
    h = (h ^ u) * 1099511628211ull;
  };
  for (size_t i = 0; i < n; i += step) mix(i);
  mix(n - 1);
  return h;
}

Prim make_prim(Cache& c, const Conv2dShape& s, bool bias, ConvImpl impl, int whole_h,
               int whole_ho) {
  const bool any = impl != ConvImpl::OneDnnPlain;
  const auto alg = impl == ConvImpl::Winograd ? dnnl::algorithm::convolution_winograd
                                              : dnnl::algorithm::convolution_direct;
  dnnl::memory::desc src({s.B, s.Cin, s.H, s.W}, f32, any ? tag::any : tag::nchw);
  dnnl::memory::desc wei({s.Cout, s.Cin, s.kh, s.kw}, f32, tag::any);
  dnnl::memory::desc bia({s.Cout}, f32, tag::x);
  dnnl::memory::desc dst({s.B, s.Cout, s.out_h(), s.out_w()}, f32, any ? tag::any : tag::nchw);
  const dims strides{s.sh, s.sw}, pl{s.pt, s.pl}, pr{s.pb, s.pr};
  auto d = bias ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, alg, src, wei,
                                                  bia, dst, strides, pl, pr)
                : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, alg, src, wei,
                                                  dst, strides, pl, pr);
  const dnnl::primitive_attr attr = user_scratchpad();
  dnnl::convolution_forward::primitive_desc pd;
  try {
    pd = dnnl::convolution_forward::primitive_desc(d, attr, c.engine);
  } catch (const dnnl::error&) {
    // Winograd covers fewer shapes than the direct kernels: fall back for this one.
    if (impl == ConvImpl::Winograd)
      return make_prim(c, s, bias, ConvImpl::OneDnnPlain, whole_h, whole_ho);
    throw;
  }
  Prim p;
  p.conv = dnnl::convolution_forward(pd);
  p.conv_scratch = pd.scratchpad_desc();
  p.src = pd.src_desc();
  p.wei = pd.weights_desc();
  p.dst = pd.dst_desc();
  // A band taller than the whole input (a single band) never reads it whole: no reorder for that.
  const bool band_in_input = s.H <= (whole_h ? whole_h : s.H);
  const auto src_user = nchw_rows(s.B, s.Cin, band_in_input ? s.H : whole_h, s.W, whole_h);
  const auto dst_user = nchw_rows(s.B, s.Cout, s.out_h(), s.out_w(), whole_ho);
  p.src_plain = p.src == src_user;
  p.wei_plain = p.wei == dnnl::memory::desc({s.Cout, s.Cin, s.kh, s.kw}, f32, tag::oihw);
  p.dst_plain = p.dst == dst_user;
  if (!p.src_plain && band_in_input) {
    const dnnl::reorder::primitive_desc r(c.engine, src_user, c.engine, p.src, attr);
    p.src_in = dnnl::reorder(r);
    p.in_scratch = r.scratchpad_desc();
  }
  if (!p.dst_plain) {
    const dnnl::reorder::primitive_desc r(c.engine, p.dst, c.engine, dst_user, attr);
    p.dst_out = dnnl::reorder(r);
    p.out_scratch = r.scratchpad_desc();
  }
  return p;
}

Prim& prim(Cache& c, const Conv2dShape& s, bool bias, ConvImpl impl, int whole_h = 0,
           int whole_ho = 0) {
  const Key key = key_of(s, bias, impl, whole_h, whole_ho);
  auto it = c.prims.find(key);
  if (it == c.prims.end()) {
    if (c.prims.size() >= kMaxCached) c.prims.clear();
    it = c.prims.emplace(key, make_prim(c, s, bias, impl, whole_h, whole_ho)).first;
  }
  return it->second;
}

// p's convolution of xm into ym (both in p's layouts) with weights wm in p's layout.
void execute(Cache& c, Prim& p, const dnnl::memory& xm, const dnnl::memory& wm, const float* b,
             const dnnl::memory& ym) {
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, ym}};
  if (b)
    args.emplace(DNNL_ARG_BIAS,
                 dnnl::memory({{p.dst.dims()[1]}, f32, tag::x}, c.engine, const_cast<float*>(b)));
  args.emplace(DNNL_ARG_SCRATCHPAD, c.scratch_for(p.conv_scratch));
  p.conv.execute(c.stream, args);
}

// Copies `from` into `to` (other layouts), through p's reorder `r` when given.
void reorder(Cache& c, const dnnl::reorder* r, const dnnl::memory::desc* r_scratch,
             dnnl::memory from, dnnl::memory to) {
  if (r)
    r->execute(c.stream, {{DNNL_ARG_FROM, from},
                          {DNNL_ARG_TO, to},
                          {DNNL_ARG_SCRATCHPAD, c.scratch_for(*r_scratch)}});
  else
    dnnl::reorder(from, to).execute(c.stream, from, to);
}

// ConvImpl::OneDnnBands: the blocked kind on bands of R output rows, whose input and output in the
// primitive's layouts stay within kBandBytes (2 MiB) each, so only a band of the activation is ever
// held twice; the weights are reordered once per call into one buffer (none kept per primitive).
// Every band runs one primitive, unpadded above and below: an edge band's buffer holds zeros where
// its rows lie outside the input (the last band's surplus output rows are dropped). R follows from
// the shape alone, never from the thread count, so each output's sum has one order at any thread
// count. docs/autoencoder.md, "The decoder's convolutions".
constexpr size_t kBandBytes = size_t{2} << 20;

int band_rows(const Conv2dShape& s) {
  const size_t in_rows = size_t(s.B) * s.Cin * s.W * s.sh * sizeof(float);  // per output row
  const size_t out_row = size_t(s.B) * s.Cout * s.out_w() * sizeof(float);
  return int(std::clamp<size_t>(kBandBytes / std::max(in_rows, out_row), 1, size_t(s.out_h())));
}

void conv_bands(Cache& c, const Conv2dShape& s, const float* x, const float* w, const float* b,
                float* y) {
  const int Ho = s.out_h(), Wo = s.out_w(), R = band_rows(s);
  Conv2dShape bs = s;  // one band: R output rows of (R - 1) * sh + kh input rows
  bs.H = (R - 1) * s.sh + s.kh;
  bs.pt = bs.pb = 0;
  Prim& p = prim(c, bs, b != nullptr, ConvImpl::OneDnnBands, s.H, Ho);
  dnnl::memory wu({{s.Cout, s.Cin, s.kh, s.kw}, f32, tag::oihw}, c.engine, const_cast<float*>(w));
  dnnl::memory wm = wu;
  if (!p.wei_plain) {
    wm = c.in(c.band_wei, p.wei);
    dnnl::reorder(wu, wm).execute(c.stream, wu, wm);
  }
  // tag::any never gives the user's strided view of a band; the buffers need p's own layouts
  UVIT_CHECK(!p.src_plain && !p.dst_plain, "conv2d: oneDNN chose the user's layout for a band");
  const dnnl::memory xm = c.in(c.band_src, p.src), ym = c.in(c.band_dst, p.dst);
  for (int o0 = 0; o0 < Ho; o0 += R) {
    const int lo = o0 * s.sh - s.pt;  // the band's first input row, maybe above the input
    const int first = std::max(lo, 0), n = std::min(lo + bs.H, s.H) - first;  // rows in the input
    const int rows = std::min(R, Ho - o0);
    const dnnl::memory yu(nchw_rows(s.B, s.Cout, rows, Wo, Ho), c.engine, y + size_t(o0) * Wo);
    const auto xu = [&] {
      return dnnl::memory(nchw_rows(s.B, s.Cin, n, s.W, s.H), c.engine,
                          const_cast<float*>(x) + size_t(first) * s.W);
    };
    if (n == bs.H) {
      reorder(c, &p.src_in, &p.in_scratch, xu(), xm);
    } else {  // an edge: zeros, then the rows inside the input (if any) at their place in the band
      std::memset(xm.get_data_handle(), 0, p.src.get_size());
      if (n > 0)
        reorder(c, nullptr, nullptr, xu(),
                dnnl::memory(p.src.submemory_desc({s.B, s.Cin, n, s.W}, {0, 0, first - lo, 0}),
                             c.engine, xm.get_data_handle()));
    }
    execute(c, p, xm, wm, b, ym);
    if (rows == R)
      reorder(c, &p.dst_out, &p.out_scratch, ym, yu);
    else
      reorder(c, nullptr, nullptr,
              dnnl::memory(p.dst.submemory_desc({s.B, s.Cout, rows, Wo}, {0, 0, 0, 0}), c.engine,
                           ym.get_data_handle()),
              yu);
  }
}

void conv_onednn(const Conv2dShape& s, const float* x, const float* w, const float* b, float* y,
                 ConvImpl impl) {
  auto& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  if (impl == ConvImpl::OneDnnBands) {
    conv_bands(c, s, x, w, b, y);
    c.stream.wait();
    return;
  }
  Prim& p = prim(c, s, b != nullptr, impl);
  dnnl::memory xu({{s.B, s.Cin, s.H, s.W}, f32, tag::nchw}, c.engine, const_cast<float*>(x));
  dnnl::memory wu({{s.Cout, s.Cin, s.kh, s.kw}, f32, tag::oihw}, c.engine, const_cast<float*>(w));
  dnnl::memory yu({{s.B, s.Cout, s.out_h(), s.out_w()}, f32, tag::nchw}, c.engine, y);
  dnnl::memory wm = wu;
  if (!p.wei_plain) {
    const size_t n = static_cast<size_t>(s.Cout) * s.Cin * s.kh * s.kw;
    const uint64_t sum = fingerprint(w, n);
    if (p.wei_ptr != w || p.wei_sum != sum || !p.wei_mem) {
      p.wei_mem = dnnl::memory(p.wei, c.engine);
      dnnl::reorder(wu, p.wei_mem).execute(c.stream, wu, p.wei_mem);
      p.wei_ptr = w;
      p.wei_sum = sum;
    }
    wm = p.wei_mem;
  }
  dnnl::memory xm = xu, ym = yu;
  if (!p.src_plain) {
    xm = dnnl::memory(p.src, c.engine);
    reorder(c, &p.src_in, &p.in_scratch, xu, xm);
  }
  if (!p.dst_plain) ym = dnnl::memory(p.dst, c.engine);
  execute(c, p, xm, wm, b, ym);
  if (!p.dst_plain) reorder(c, &p.dst_out, &p.out_scratch, ym, yu);
  c.stream.wait();
}

bool is_pointwise(const Conv2dShape& s) {
  return s.kh == 1 && s.kw == 1 && s.sh == 1 && s.sw == 1 && s.pt == 0 && s.pl == 0 && s.pb == 0 &&
         s.pr == 0;
}

// im2col + GEMM per image, in row bands so the column buffer stays near 32 MiB.
void conv_im2col(const Conv2dShape& s, const float* x, const float* w, const float* b, float* y) {
  const int Ho = s.out_h(), Wo = s.out_w();
  const int K = s.Cin * s.kh * s.kw;
  const size_t HWin = static_cast<size_t>(s.H) * s.W, HWo = static_cast<size_t>(Ho) * Wo;
  const bool direct = is_pointwise(s);
  const size_t budget = size_t{8} << 20;  // floats
  const int band =
      direct ? Ho : std::clamp<int>(static_cast<int>(budget / (size_t(K) * Wo)), 1, Ho);
  std::vector<float> col(direct ? 0 : static_cast<size_t>(K) * band * Wo);
  for (int n = 0; n < s.B; ++n) {
    const float* xn = x + n * s.Cin * HWin;
    float* yn = y + n * s.Cout * HWo;
    for (int r0 = 0; r0 < Ho; r0 += band) {
      const int rows = std::min(band, Ho - r0);
      const int cols = rows * Wo;
      const float* B = xn;
      if (!direct) {
#pragma omp parallel for schedule(static)
        for (int k = 0; k < K; ++k) {
          const int ci = k / (s.kh * s.kw), ky = (k / s.kw) % s.kh, kx = k % s.kw;
          const float* xc = xn + ci * HWin;
          float* dst = col.data() + static_cast<size_t>(k) * cols;
          for (int r = 0; r < rows; ++r) {
            const int iy = (r0 + r) * s.sh - s.pt + ky;
            float* d = dst + static_cast<size_t>(r) * Wo;
            if (iy < 0 || iy >= s.H) {
              std::fill(d, d + Wo, 0.f);
              continue;
            }
            const float* xr = xc + static_cast<size_t>(iy) * s.W;
            for (int c = 0; c < Wo; ++c) {
              const int ix = c * s.sw - s.pl + kx;
              d[c] = (ix >= 0 && ix < s.W) ? xr[ix] : 0.f;
            }
          }
        }
        B = col.data();
      }
      // y[:, r0 band] = W[Cout, K] * col[K, cols]; rows of y have stride HWo.
      float* yb = yn + static_cast<size_t>(r0) * Wo;
      if (b) {
        for (int co = 0; co < s.Cout; ++co) std::fill(yb + co * HWo, yb + co * HWo + cols, b[co]);
      }
      const dnnl_status_t st =
          dnnl_sgemm('N', 'N', s.Cout, cols, K, 1.f, w, K, B, direct ? static_cast<int>(HWo) : cols,
                     b ? 1.f : 0.f, yb, static_cast<int>(HWo));
      if (st != dnnl_success)
        fail("conv2d: oneDNN sgemm failed with status ", static_cast<int>(st));
    }
  }
}

thread_local ConvImpl scoped_impl = ConvImpl::Auto;  // ConvImplScope's choice on this thread

ConvImpl default_impl(const Conv2dShape& s) {
  static const int forced = [] {
    const char* e = std::getenv("UVIT_CONV_IMPL");
    if (e && std::strcmp(e, "im2col") == 0) return static_cast<int>(ConvImpl::Im2col);
    if (e && std::strcmp(e, "blocked") == 0) return static_cast<int>(ConvImpl::OneDnn);
    if (e && std::strcmp(e, "plain") == 0) return static_cast<int>(ConvImpl::OneDnnPlain);
    if (e && std::strcmp(e, "winograd") == 0) return static_cast<int>(ConvImpl::Winograd);
    // A typo must not silently measure the default (docs/autoencoder.md names the choices).
    UVIT_CHECK(!e || !*e, "UVIT_CONV_IMPL=", e,
               ": not a convolution kind (im2col, blocked, plain or winograd)");
    return -1;
  }();
  if (forced >= 0) return static_cast<ConvImpl>(forced);
  if (scoped_impl != ConvImpl::Auto) return scoped_impl;
  // Winograd is not the default: its kernel alone is 3-4x faster at the decoder's shapes, but the
  // weight transform (170 ms for 512x512x3x3) and the nchw <-> blocked reorders cost more than
  // that saves when each weight is used once per decode (SD decode: 9.8 s vs 4.3 s plain).
  return is_pointwise(s) ? ConvImpl::Im2col : ConvImpl::OneDnnPlain;
}

}  // namespace

ConvImplScope::ConvImplScope(ConvImpl impl) : prev_(scoped_impl) { scoped_impl = impl; }
ConvImplScope::~ConvImplScope() { scoped_impl = prev_; }

void conv2d(const Conv2dShape& s, const float* x, const float* w, const float* b, float* y,
            ConvImpl impl) {
  s.check();
  if (impl == ConvImpl::Auto) impl = default_impl(s);
  if (impl == ConvImpl::Im2col) return conv_im2col(s, x, w, b, y);
  try {
    conv_onednn(s, x, w, b, y, impl);
  } catch (const dnnl::error& e) {
    fail("conv2d: oneDNN failed (", e.what(), ") for Cin=", s.Cin, " Cout=", s.Cout, " ", s.H, "x",
         s.W, " k=", s.kh, "x", s.kw);
  }
}

}  // namespace uvit::nn
