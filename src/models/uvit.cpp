// U-ViT forward and backward (SPEC 2-3), as explicit layer calls over planned buffers.
// Token order: class-conditional [label, time, patches]; unconditional [time, patches];
// text-to-image [time, context x num_clip_token, patches]. Long skips pair LIFO.
#include <algorithm>
#include <climits>
#include <cmath>

#include "models/layers.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"
#include "uvit/model.hpp"
#include "uvit/rng.hpp"

namespace uvit {

using namespace layers;

namespace {
constexpr float kLnEps = 1e-5f;

// How an out block merges its long skip s into its input x (nnet.skip_mode):
//   TwoLinear: W_x x + W_s s + b. concat_linear (the official Linear(concat(x, s))) reads W_x, W_s
//              as skip_linear's columns [:D] and [D:]; add_linear, Linear(x + s), reads the one
//              [D, D] weight twice, so neither needs the concatenation or the sum materialised.
//   LinearAdd: x + Linear(s).   Add: x + s.
enum class SkipOp { None, TwoLinear, LinearAdd, Add };

// One U-ViT block: [merge the long skip] -> x + attn(norm1(x)) -> x + mlp(norm2(x)). With
// time_cond adaln each norm's output is modulated, y = (1 + scale) * LN(x) + shift, by a per-sample
// (shift, scale) from `ada` applied to the time embedding (docs/configs.md).
struct BlockW {
  Norm norm1, norm2;
  Linear ada;  // adaLN_modulation: time embedding [D] -> (shift1, scale1, shift2, scale2) [4 D]
  Attention attn;
  Mlp mlp;
  SkipOp skip = SkipOp::None;
  Linear skip_x, skip_s;  // TwoLinear: the weights of x and of the skip (the bias goes with skip_s)
};

struct BlockActs {
  const float* xs = nullptr;  // block stream input (after skip_linear when present)
  float* xs_buf = nullptr;    // owned storage for xs in skip blocks
  float *h1, *mean1, *rstd1, *x2, *h2, *mean2, *rstd2;
  float *mod = nullptr, *m1 = nullptr, *m2 = nullptr;  // adaln: [B, 4D], the modulated norms
  AttentionActs attn;
  MlpActs mlp;
};

BlockW block_weights(const ParamTable& t, const std::string& p, const NetConfig& c,
                     bool out_block) {
  BlockW w;
  const int D = c.embed_dim;
  w.norm1 = norm(t, p + ".norm1", D, kLnEps);
  w.norm2 = norm(t, p + ".norm2", D, kLnEps);
  w.attn.qkv = linear(t, p + ".attn.qkv");
  w.attn.proj = linear(t, p + ".attn.proj");
  w.attn.heads = c.num_heads;
  w.attn.head_dim = c.head_dim();
  w.attn.scale = c.attn_scale();
  w.mlp.fc1 = linear(t, p + ".mlp.fc1");
  w.mlp.fc2 = linear(t, p + ".mlp.fc2");
  w.mlp.act = Activation::Gelu;
  if (c.adaln()) w.ada = linear(t, p + ".adaLN_modulation");
  if (!out_block || !c.skip) return w;
  if (c.skip_mode == "add") {
    w.skip = SkipOp::Add;
    return w;
  }
  const Linear l = linear(t, p + ".skip_linear");
  if (c.skip_mode == "linear_add") {
    w.skip = SkipOp::LinearAdd;
    w.skip_s = l;
  } else {
    w.skip = SkipOp::TwoLinear;
    w.skip_x = column_slice(l, 0, D, false);
    w.skip_s = c.skip_mode == "concat_linear" ? column_slice(l, D, D, true) : l;
  }
  return w;
}
}  // namespace

struct UViT::Plan {
  int B = 0;
  bool train = false, ckpt = false;
  Arena arena;
  explicit Plan(Backend& be) : arena(be) {}
  // inputs of the last forward, kept for backward
  const float* x = nullptr;
  const float* t = nullptr;
  const int32_t* y = nullptr;
  const float* ctx = nullptr;  // the context as act (the input itself when act is fp32)
  // forward buffers
  float *cols, *patches, *extras, *temb, *th, *ts, *normout, *nmean, *nrstd, *tok, *img, *ctx_act;
  float* pos_fixed = nullptr;  // pos_embed sincos_2d / none: the fixed table [tokens, D], fp32
  float* dpos_sink = nullptr;  // ... and where tokens_bwd's (discarded) position gradient goes
  // t2i: the context tokens [B nc, D] (context_embed's output, then its gradient): one GEMM over
  // the batch, moved to and from their rows of the extras by one copy_3d.
  float* ctx_tok = nullptr;
  // conv_position before_linear: the patch tokens as a [B, D, g, g] grid, the conv's output, and
  // that output as tokens [B L, D] (decoder_pred's input); their gradients.
  float *grid = nullptr, *gridconv = nullptr, *ctok = nullptr, *dgrid = nullptr, *dgridin = nullptr;
  std::vector<float*> stream;  // stream[k] = input of block k; stream[nblocks] = last output
  std::vector<BlockActs> acts;
  // backward buffers
  float *dX, *dX2, *dG, *dH, *dQKV, *dA, *dtok, *dimg, *dextras, *dpatches, *dth;
  std::vector<float*> dskip;
  // time_cond adaln: the time embedding [B, D] every block's adaLN_modulation reads, its gradient,
  // and one block's modulation gradient [B, 4D].
  float *tvec = nullptr, *dtvec = nullptr, *dmod = nullptr;
  // patch_embed conv_stack: the image as NHWC act, and per stride-2 conv its im2col columns,
  // output before and after the GELU; backward scratch (two ping-pong maps and columns).
  float *simg = nullptr, *sd0 = nullptr, *sd1 = nullptr, *sdcols = nullptr;
  std::vector<float*> scols, spre, spost;
  std::vector<Linear> stem;
  // layers
  std::vector<BlockW> bw;
  Linear patch, time0, time2, context, decoder;
  Norm norm;
};

namespace {
NetSpec uvit_spec(const NetConfig& n, int null_class) {
  NetSpec s;
  s.name = n.name;
  s.in_chans = s.out_chans = n.in_chans;
  s.img_size = n.img_size;
  if (n.t2i()) {
    s.context_tokens = n.num_clip_token;
    s.context_dim = n.clip_dim;
  } else if (n.num_classes > 0) {
    s.num_classes = n.num_classes;
    s.null_class = null_class;
  }
  return s;
}
}  // namespace

UViT::UViT(const NetConfig& cfg, Backend& be, int null_class)
    : Network(uvit_spec(cfg, null_class), build_param_table(cfg), be), cfg_(cfg) {
  plan(1, false);  // binds the layers, which marks the GEMM weights (quantised loads need them)
}

UViT::~UViT() = default;

void UViT::init_random(uint64_t seed) {
  write_params([&](size_t stream, const ParamEntry& e, float* p) {
    const Philox rng(seed, stream);
    const bool conv = e.name.rfind("patch_embed.", 0) == 0 || e.name.rfind("final_layer", 0) == 0 ||
                      e.name.rfind("token_conv", 0) == 0;
    if (conv) {
      // PyTorch's Conv2d default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
      const auto& w = table_.at(e.name.substr(0, e.name.rfind('.')) + ".weight");
      const double fan_in = double(w.numel) / double(w.shape[0]);
      const double bound = 1.0 / std::sqrt(fan_in);
      for (size_t i = 0; i < e.numel; ++i) p[i] = float((2.0 * rng.uniform(i) - 1.0) * bound);
    } else if (e.name.find(".adaLN_modulation.") != std::string::npos) {
      std::fill(p, p + e.numel, 0.f);  // adaln starts as the plain LayerNorm
    } else if (e.name == "label_emb.weight") {
      for (size_t i = 0; i < e.numel; ++i) p[i] = rng.normal(i);  // nn.Embedding default N(0, 1)
    } else if (e.shape.size() == 1 && (e.name.find("norm") != std::string::npos) &&
               e.name.ends_with(".weight")) {
      std::fill(p, p + e.numel, 1.f);  // LayerNorm weight
    } else if (e.shape.size() == 1) {
      std::fill(p, p + e.numel, 0.f);  // biases and LayerNorm bias
    } else {
      // trunc_normal_(std=.02) with absolute bounds +-2: effectively untruncated (SPEC 4.4).
      // Counter-based draws: element i depends only on (seed, tensor, i), so threads may split it.
      const long n = long(e.numel);
#pragma omp parallel for schedule(static) if (n > (1 << 16))
      for (long i = 0; i < n; ++i) p[i] = std::clamp(0.02f * rng.normal(i), -2.f, 2.f);
    }
  });
}

void UViT::plan(int B, bool train) {
  const bool ckpt = train && cfg_.use_checkpoint;
  if (plan_ && plan_->B == B && plan_->train == train && plan_->ckpt == ckpt) return;
  plan_.reset();
  plan_ = std::make_unique<Plan>(be_);
  Plan& P = *plan_;
  P.B = B;
  P.train = train;
  P.ckpt = ckpt;
  const size_t D = cfg_.embed_dim, N = cfg_.tokens(), M = size_t(B) * N, L = cfg_.num_patches();
  const size_t E = cfg_.extras(), Hd = cfg_.mlp_hidden(), nh = cfg_.num_heads;
  const size_t C = cfg_.in_chans, S = cfg_.img_size, pd = cfg_.patch_dim();
  const int nin = cfg_.blocks_per_side(), nblocks = 2 * nin + 1;

  // take() holds act elements, take32() fp32 ones (statistics, the image-space head).
  const int nstem = cfg_.patch_embed == "conv_stack" ? cfg_.stem_convs() : 0;
  P.arena.plan([&](Arena& a) {
    auto take = [&](size_t n) { return a.act(n); };
    auto take32 = [&](size_t n) { return a.f32(n); };
    P.cols = nstem ? nullptr : take(size_t(B) * L * C * cfg_.patch_size * cfg_.patch_size);
    if (nstem) {
      P.simg = take(size_t(B) * S * S * C);
      P.scols.assign(nstem, nullptr);
      P.spre.assign(nstem, nullptr);
      P.spost.assign(nstem, nullptr);
      size_t side = S, cin = C, dmax = 0, cmax = 0;
      for (int i = 0; i < nstem; ++i) {
        side /= 2;
        const size_t px = size_t(B) * side * side, co = cfg_.stem_channels(i);
        P.scols[i] = take(px * 9 * cin);
        P.spre[i] = take(px * co);
        P.spost[i] = take(px * co);
        dmax = std::max(dmax, px * co);
        if (i > 0) cmax = std::max(cmax, px * 9 * cin);
        cin = co;
      }
      if (train) {
        P.sd0 = take(dmax);
        P.sd1 = take(dmax);
        P.sdcols = take(cmax);
      }
    }
    if (cfg_.adaln()) {
      P.tvec = take(size_t(B) * D);
      P.dtvec = train ? take(size_t(B) * D) : nullptr;
      P.dmod = train ? take(size_t(B) * 4 * D) : nullptr;
    }
    P.patches = take(size_t(B) * L * D);
    P.extras = take(size_t(B) * E * D);
    P.temb = cfg_.mlp_time_embed ? take(size_t(B) * D) : nullptr;
    P.th = cfg_.mlp_time_embed ? take(size_t(B) * 4 * D) : nullptr;
    P.ts = cfg_.mlp_time_embed ? take(size_t(B) * 4 * D) : nullptr;
    P.stream.assign(nblocks + 1, nullptr);
    if (train) {
      for (auto& s : P.stream) s = take(M * D);
    } else {
      // Inference keeps only what the long skips need, and ping-pongs the rest.
      for (int k = 0; k <= nin; ++k) P.stream[k] = take(M * D);
      float* x = take(M * D);
      float* y = take(M * D);
      for (int k = nin + 1; k <= nblocks; ++k) P.stream[k] = ((k - nin) % 2) ? x : y;
    }
    const int nacts = (train && !ckpt) ? nblocks : 1;
    P.acts.assign(nacts, BlockActs{});
    for (auto& A : P.acts) {
      A.xs_buf = cfg_.skip ? take(M * D) : nullptr;
      A.h1 = take(M * D);
      A.mean1 = take32(M);
      A.rstd1 = take32(M);
      A.attn.qkv = take(M * 3 * D);
      A.attn.att = take(M * D);
      A.attn.lse = take32(size_t(B) * nh * N);
      A.x2 = take(M * D);
      A.h2 = take(M * D);
      A.mean2 = take32(M);
      A.rstd2 = take32(M);
      A.mlp.f = take(M * Hd);
      A.mlp.g = take(M * Hd);
      if (cfg_.adaln()) {
        A.mod = take(size_t(B) * 4 * D);
        A.m1 = take(M * D);
        A.m2 = take(M * D);
      }
    }
    P.normout = take(M * D);
    P.nmean = take32(M);
    P.nrstd = take32(M);
    P.tok = take(M * pd);
    P.img = cfg_.conv_after() ? take32(size_t(B) * C * S * S) : nullptr;
    if (!cfg_.learned_pos()) {
      P.pos_fixed = take32(N * D);
      P.dpos_sink = train ? take32(N * D) : nullptr;
    }
    if (cfg_.conv_before()) {
      P.grid = take32(size_t(B) * L * D);
      P.gridconv = take32(size_t(B) * L * D);
      P.ctok = take(size_t(B) * L * D);
      P.dgrid = train ? take32(size_t(B) * L * D) : nullptr;
      P.dgridin = train ? take32(size_t(B) * L * D) : nullptr;
    }
    P.ctx_act = (cfg_.t2i() && be_.act_bytes() != sizeof(float))
                    ? take(size_t(B) * cfg_.num_clip_token * cfg_.clip_dim)
                    : nullptr;
    P.ctx_tok = cfg_.t2i() ? take(size_t(B) * cfg_.num_clip_token * D) : nullptr;
    if (train) {
      P.dX = take(M * D);
      P.dX2 = take(M * D);
      P.dG = take(M * Hd);
      P.dH = take(M * D);
      P.dQKV = take(M * 3 * D);
      P.dA = take(M * D);
      P.dtok = take(M * pd);
      P.dimg = cfg_.conv_after() ? take32(size_t(B) * C * S * S) : nullptr;
      P.dextras = take(size_t(B) * E * D);
      P.dpatches = take(size_t(B) * L * D);
      P.dth = cfg_.mlp_time_embed ? take(size_t(B) * 4 * D) : nullptr;
      P.dskip.assign(nin, nullptr);
      for (auto& d : P.dskip) d = take(M * D);
    }
  });
  arena_bytes_ = P.arena.size();
  if (P.pos_fixed) {
    // Fixed positions: zero for the extra tokens (and everywhere for none), the 2-D sin-cos table
    // for the patches.
    std::vector<float> pos(N * D, 0.f);
    if (cfg_.pos_embed == "sincos_2d") sincos_2d(pos.data() + E * D, cfg_.grid(), int(D));
    be_.upload(P.pos_fixed, pos.data(), pos.size() * sizeof(float));
  }
  P.bw.clear();
  for (int i = 0; i < nin; ++i)
    P.bw.push_back(block_weights(table_, cat("in_blocks.", i), cfg_, false));
  P.bw.push_back(block_weights(table_, "mid_block", cfg_, false));
  for (int i = 0; i < nin; ++i)
    P.bw.push_back(block_weights(table_, cat("out_blocks.", i), cfg_, true));
  // The conv weight [D, C, p, p] as [D, C p p]; conv_stack's 1x1 [D, c, 1, 1] as [D, c].
  P.patch = linear(table_, "patch_embed.proj");
  P.stem.clear();
  for (int i = 0; i < nstem; ++i) P.stem.push_back(linear(table_, cat("patch_embed.convs.", i)));
  if (cfg_.mlp_time_embed) {
    P.time0 = linear(table_, "time_embed.0");
    P.time2 = linear(table_, "time_embed.2");
  }
  if (cfg_.t2i()) P.context = linear(table_, "context_embed");
  P.decoder = linear(table_, "decoder_pred");
  P.norm = norm(table_, "norm", int(D), kLnEps);
}

// Patch embedding. linear: im2col + GEMM (kernel = stride = p). conv_stack: the image as NHWC
// tokens, then per stride-2 3x3 conv im2col + GEMM + GELU, then the 1x1 conv as a GEMM.
void UViT::patch_forward(const float* x) {
  Plan& P = *plan_;
  const Weights W{be_, params_, act_params_, grads_, quant_.get(), &table_};
  const int B = P.B, C = cfg_.in_chans, S = cfg_.img_size, D = cfg_.embed_dim;
  const int L = cfg_.num_patches();
  if (P.stem.empty()) {
    be_.patch_im2col(x, P.cols, B, C, S, cfg_.patch_size);
    linear_fwd(W, P.patch, P.cols, P.patch.in, P.patches, D, B * L);
    return;
  }
  be_.patch_im2col(x, P.simg, B, C, S, 1);  // p = 1: [B, S S, C]
  const float* in = P.simg;
  int side = S, cin = C;
  for (size_t i = 0; i < P.stem.size(); ++i) {
    const int co = P.stem[i].out, px = B * (side / 2) * (side / 2);
    be_.conv3x3_im2col(in, P.scols[i], B, cin, side, side, 2);
    linear_fwd(W, P.stem[i], P.scols[i], 9 * cin, P.spre[i], co, px);
    be_.gelu_fwd(P.spre[i], P.spost[i], size_t(px) * co);
    in = P.spost[i];
    side /= 2;
    cin = co;
  }
  linear_fwd(W, P.patch, in, cin, P.patches, D, B * L);
}

void UViT::patch_backward() {
  Plan& P = *plan_;
  const Weights W{be_, params_, act_params_, grads_, quant_.get(), &table_};
  const int B = P.B, D = cfg_.embed_dim, L = cfg_.num_patches();
  if (P.stem.empty()) {
    linear_bwd(W, P.patch, P.cols, P.patch.in, P.dpatches, D, nullptr, 0, B * L);
    return;
  }
  const int n = int(P.stem.size());
  int cin = P.patch.in;
  float* d = P.sd0;  // d(output of conv i after its GELU)
  linear_bwd(W, P.patch, P.spost[n - 1], cin, P.dpatches, D, d, cin, B * L);
  int side = cfg_.grid();
  for (int i = n - 1; i >= 0; --i) {
    const int co = P.stem[i].out, ci = P.stem[i].in / 9, px = B * side * side;
    be_.gelu_bwd(d, P.spre[i], d, size_t(px) * co);
    if (i == 0) {
      linear_bwd(W, P.stem[i], P.scols[i], 9 * ci, d, co, nullptr, 0, px);
      break;
    }
    float* next = d == P.sd0 ? P.sd1 : P.sd0;
    linear_bwd(W, P.stem[i], P.scols[i], 9 * ci, d, co, P.sdcols, 9 * ci, px);
    be_.conv3x3_col2im(P.sdcols, next, B, ci, 2 * side, 2 * side, 2);
    d = next;
    side *= 2;
  }
}

// The out block k's skip source: the output of in-block 2 nin - k, i.e. stream[2 nin - k + 1].
static int skip_stream(int k, int nin) { return 2 * nin - k + 1; }

void UViT::block_forward(int k, const float* skip, bool keep) {
  Plan& P = *plan_;
  BlockActs& A = P.acts[keep && !P.ckpt ? k : 0];
  const BlockW& w = P.bw[k];
  const Weights W{be_, params_, act_params_, grads_, quant_.get(), &table_};
  const int D = cfg_.embed_dim, M = P.B * cfg_.tokens();
  const float* xin = P.stream[k];
  float* out = P.stream[k + 1];

  switch (w.skip) {
    case SkipOp::TwoLinear:
      linear_fwd(W, w.skip_x, xin, D, A.xs_buf, D, M);
      linear_fwd(W, w.skip_s, skip, D, A.xs_buf, D, M, A.xs_buf);
      break;
    case SkipOp::LinearAdd:
      linear_fwd(W, w.skip_s, skip, D, A.xs_buf, D, M, xin);
      break;
    case SkipOp::Add:
      be_.copy_act(A.xs_buf, xin, size_t(M) * D);
      be_.axpy_act(A.xs_buf, skip, 1.f, size_t(M) * D);
      break;
    case SkipOp::None:
      break;
  }
  A.xs = w.skip == SkipOp::None ? xin : A.xs_buf;
  const bool ada = cfg_.adaln();
  const int N = cfg_.tokens(), D4 = 4 * D;
  auto chunk = [&](int i) { return be_.act_at(A.mod, size_t(i) * D); };
  if (ada) linear_fwd(W, w.ada, P.tvec, D, A.mod, D4, P.B);
  norm_fwd(W, w.norm1, A.xs, A.h1, A.mean1, A.rstd1, M);
  if (ada) be_.modulate_fwd(A.h1, chunk(0), chunk(1), D4, A.m1, P.B, N, D);
  attention_fwd(W, w.attn, ada ? A.m1 : A.h1, A.attn, A.x2, A.xs, P.B, N);
  norm_fwd(W, w.norm2, A.x2, A.h2, A.mean2, A.rstd2, M);
  if (ada) be_.modulate_fwd(A.h2, chunk(2), chunk(3), D4, A.m2, P.B, N, D);
  mlp_fwd(W, w.mlp, ada ? A.m2 : A.h2, A.mlp, out, A.x2, M);
}

void UViT::forward(const float* x, const float* t, const int32_t* y, const float* context,
                   float* out, int B, bool train) {
  check_inputs(y, context, B);
  plan(B, train);
  act_params();
  Plan& P = *plan_;
  P.x = x;
  P.t = t;
  P.y = y;
  P.ctx = context;
  const Weights W{be_, params_, act_params_, grads_, quant_.get(), &table_};
  auto off = [&](const char* n) { return table_.at(n).offset; };
  const int D = cfg_.embed_dim, C = cfg_.in_chans, S = cfg_.img_size, p = cfg_.patch_size;
  const int L = cfg_.num_patches(), E = cfg_.extras(), M = B * cfg_.tokens();

  patch_forward(x);

  // Extra tokens; with adaln the time embedding goes to P.tvec instead of a token.
  const int time_row = (!cfg_.t2i() && cfg_.num_classes > 0) ? 1 : 0;
  const int ctx_row = cfg_.time_token() ? 1 : 0;
  const int ldt = cfg_.adaln() ? D : E * D;
  float* time_tok = cfg_.adaln() ? P.tvec : be_.act_at(P.extras, size_t(time_row) * D);
  if (cfg_.mlp_time_embed) {
    be_.timestep_embedding(t, P.temb, B, D, D);
    linear_fwd(W, P.time0, P.temb, D, P.th, 4 * D, B);
    be_.silu_fwd(P.th, P.ts, size_t(B) * 4 * D);
    linear_fwd(W, P.time2, P.ts, 4 * D, time_tok, ldt, B);
  } else {
    be_.timestep_embedding(t, time_tok, B, D, ldt);
  }
  if (cfg_.t2i()) {
    const int nc = cfg_.num_clip_token, cd = cfg_.clip_dim;
    if (P.ctx_act) {
      be_.to_act(context, P.ctx_act, size_t(B) * nc * cd);
      P.ctx = P.ctx_act;
    }
    linear_fwd(W, P.context, P.ctx, cd, P.ctx_tok, D, B * nc);
    be_.copy_3d(be_.act_at(P.extras, size_t(ctx_row) * D), D, long(E) * D, P.ctx_tok, D,
                long(nc) * D, B, nc, D);
  } else if (cfg_.num_classes > 0) {
    be_.embedding_fwd(params_ + off("label_emb.weight"), y, P.extras, B, D, E * D);
  }
  const float* pos = cfg_.learned_pos() ? params_ + off("pos_embed") : P.pos_fixed;
  be_.tokens_fwd(P.extras, P.patches, pos, P.stream[0], B, E, L, D);

  // Blocks: in-block outputs are the long skips, consumed LIFO by the out blocks.
  const int nin = cfg_.blocks_per_side();
  for (int k = 0; k < 2 * nin + 1; ++k)
    block_forward(k, k > nin ? P.stream[skip_stream(k, nin)] : nullptr, train);

  // Head: norm -> decoder_pred -> drop extras + unpatchify -> final conv.
  const int last = 2 * nin + 1, pd = cfg_.patch_dim();
  norm_fwd(W, P.norm, P.stream[last], P.normout, P.nmean, P.nrstd, M);
  if (cfg_.conv_before()) {
    // The patch tokens as a D-channel g x g image (unpatchify with p = 1 drops the extras), the
    // conv, and back to tokens (im2col with p = 1); decoder_pred then sees the patches only.
    const int g = cfg_.grid();
    be_.unpatchify_fwd(P.normout, P.grid, B, E, D, g, 1);
    be_.conv3x3_fwd(P.grid, params_ + off("token_conv.weight"), params_ + off("token_conv.bias"),
                    P.gridconv, B, D, D, g, g);
    be_.patch_im2col(P.gridconv, P.ctok, B, D, g, 1);
    linear_fwd(W, P.decoder, P.ctok, D, P.tok, pd, B * L);
    be_.unpatchify_fwd(P.tok, out, B, 0, C, S, p);
    return;
  }
  linear_fwd(W, P.decoder, P.normout, D, P.tok, pd, M);
  if (cfg_.conv) {
    be_.unpatchify_fwd(P.tok, P.img, B, E, C, S, p);
    be_.conv3x3_fwd(P.img, params_ + off("final_layer.weight"), params_ + off("final_layer.bias"),
                    out, B, C, C, S, S);
  } else {
    be_.unpatchify_fwd(P.tok, out, B, E, C, S, p);
  }
}

void UViT::block_backward(int k, const float* skip, float* dskip) {
  Plan& P = *plan_;
  if (P.ckpt) block_forward(k, skip, true);  // recompute this block's activations
  BlockActs& A = P.acts[P.ckpt ? 0 : k];
  const BlockW& w = P.bw[k];
  const Weights W{be_, params_, act_params_, grads_, quant_.get(), &table_};
  const int D = cfg_.embed_dim, M = P.B * cfg_.tokens();
  float* dX = P.dX;  // in: d(block output); out: d(block input)
  const bool ada = cfg_.adaln();
  const int N = cfg_.tokens(), D4 = 4 * D;
  auto chunk = [&](int i) { return be_.act_at(A.mod, size_t(i) * D); };
  auto dchunk = [&](int i) { return be_.act_at(P.dmod, size_t(i) * D); };

  // out = x2 + mlp(norm2(x2)); x2 = xs + attn(norm1(xs)). LayerNorm backward adds into dX.
  mlp_bwd(W, w.mlp, ada ? A.m2 : A.h2, A.mlp, dX, P.dH, P.dG, M);
  if (ada) be_.modulate_bwd(P.dH, A.h2, chunk(3), D4, P.dH, dchunk(2), dchunk(3), P.B, N, D);
  norm_bwd(W, w.norm2, P.dH, A.x2, A.mean2, A.rstd2, dX, M);
  attention_bwd(W, w.attn, ada ? A.m1 : A.h1, A.attn, dX, P.dH, P.dA, P.dQKV, P.B, N);
  if (ada) be_.modulate_bwd(P.dH, A.h1, chunk(1), D4, P.dH, dchunk(0), dchunk(1), P.B, N, D);
  norm_bwd(W, w.norm1, P.dH, A.xs, A.mean1, A.rstd1, dX, M);
  if (ada) linear_bwd(W, w.ada, P.tvec, D, P.dmod, D4, P.dtvec, D, P.B, 1.f);
  // The skip's gradient goes to dskip; x's stays in dX (identity for LinearAdd and Add).
  switch (w.skip) {
    case SkipOp::TwoLinear:
      linear_bwd(W, w.skip_s, skip, D, dX, D, dskip, D, M);
      linear_bwd(W, w.skip_x, P.stream[k], D, dX, D, P.dX2, D, M);
      std::swap(P.dX, P.dX2);
      break;
    case SkipOp::LinearAdd:
      linear_bwd(W, w.skip_s, skip, D, dX, D, dskip, D, M);
      break;
    case SkipOp::Add:
      be_.copy_act(dskip, dX, size_t(M) * D);
      break;
    case SkipOp::None:
      break;
  }
}

void UViT::backward(const float* dout) {
  UVIT_CHECK(plan_ && plan_->train, "backward() needs a preceding forward(..., train=true)");
  Plan& P = *plan_;
  grads();
  const Weights W{be_, params_, act_params_, grads_, quant_.get(), &table_};
  float* G = grads_;
  auto off = [&](const char* n) { return table_.at(n).offset; };
  const int B = P.B, D = cfg_.embed_dim, C = cfg_.in_chans, S = cfg_.img_size, p = cfg_.patch_size;
  const int L = cfg_.num_patches(), E = cfg_.extras(), M = B * cfg_.tokens();
  const int nin = cfg_.blocks_per_side(), last = 2 * nin + 1, pd = cfg_.patch_dim();

  // Head.
  if (cfg_.conv_before()) {
    // Mirrors forward; the token <-> grid transposes are permutations, so each one's adjoint is
    // the other. dA [M, D] holds d(decoder_pred input).
    const int g = cfg_.grid();
    be_.unpatchify_bwd(dout, P.dtok, B, 0, C, S, p);
    linear_bwd(W, P.decoder, P.ctok, D, P.dtok, pd, P.dA, D, B * L);
    be_.unpatchify_fwd(P.dA, P.dgrid, B, 0, D, g, 1);
    be_.conv3x3_bwd(P.dgrid, P.grid, params_ + off("token_conv.weight"), P.dgridin,
                    G + off("token_conv.weight"), G + off("token_conv.bias"), B, D, D, g, g);
    be_.unpatchify_bwd(P.dgridin, P.dH, B, E, D, g, 1);
  } else {
    const float* dimg = dout;
    if (cfg_.conv) {
      be_.conv3x3_bwd(dout, P.img, params_ + off("final_layer.weight"), P.dimg,
                      G + off("final_layer.weight"), G + off("final_layer.bias"), B, C, C, S, S);
      dimg = P.dimg;
    }
    be_.unpatchify_bwd(dimg, P.dtok, B, E, C, S, p);
    linear_bwd(W, P.decoder, P.normout, D, P.dtok, pd, P.dH, D, M);
  }
  be_.zero_act(P.dX, size_t(M) * D);
  norm_bwd(W, P.norm, P.dH, P.stream[last], P.nmean, P.nrstd, P.dX, M);
  grads_ready(off("norm.weight"), table_.total());  // the head: norm to the end of the table

  // Blocks in reverse; an in-block's output also receives its out-block's skip gradient.
  if (cfg_.adaln()) be_.zero_act(P.dtvec, size_t(B) * D);
  for (int k = last - 1; k >= 0; --k) {
    if (k < nin && cfg_.skip) be_.axpy_act(P.dX, P.dskip[k], 1.f, size_t(M) * D);
    const int pair = skip_stream(k, nin);
    block_backward(k, k > nin ? P.stream[pair] : nullptr, k > nin ? P.dskip[pair - 1] : nullptr);
    grads_ready(k < nin    ? cat("in_blocks.", k, ".")
                : k == nin ? std::string("mid_block.")
                           : cat("out_blocks.", k - nin - 1, "."));
  }

  // Tokens and embeddings.
  float* dpos = P.dpos_sink;  // fixed positions: no gradient (tokens_bwd still wants somewhere)
  if (cfg_.learned_pos())
    dpos = G + off("pos_embed");
  else
    be_.fill(dpos, 0.f, size_t(cfg_.tokens()) * D);
  be_.tokens_bwd(P.dX, P.dextras, P.dpatches, dpos, B, E, L, D);
  patch_backward();
  const int time_row = (!cfg_.t2i() && cfg_.num_classes > 0) ? 1 : 0;
  const int ctx_row = cfg_.time_token() ? 1 : 0;
  if (cfg_.mlp_time_embed) {
    const float* dtt = cfg_.adaln() ? P.dtvec : be_.act_at(P.dextras, size_t(time_row) * D);
    const int ldt = cfg_.adaln() ? D : E * D;
    linear_bwd(W, P.time2, P.ts, 4 * D, dtt, ldt, P.dth, 4 * D, B);
    be_.silu_bwd(P.dth, P.th, P.dth, size_t(B) * 4 * D);
    linear_bwd(W, P.time0, P.temb, D, P.dth, 4 * D, nullptr, 0, B);
  }
  if (cfg_.t2i()) {
    const int nc = cfg_.num_clip_token, cd = cfg_.clip_dim;
    be_.copy_3d(P.ctx_tok, D, long(nc) * D, be_.act_at(P.dextras, size_t(ctx_row) * D), D,
                long(E) * D, B, nc, D);
    linear_bwd(W, P.context, P.ctx, cd, P.ctx_tok, D, nullptr, 0, B * nc);
  } else if (float* dl = cfg_.num_classes > 0 ? W.grad(off("label_emb.weight")) : nullptr) {
    be_.embedding_bwd(P.dextras, P.y, dl, B, D, E * D);
  }
}

// The registry entry of `uvit` and `uvit_t2i` (one parser: the name selects the variant).
NetworkFamily uvit_family(const std::string& name) {
  auto null_class = [](const nlohmann::json& doc, const NetConfig& n) {
    // Official presets with dataset.cfg train with label dropout to the last class.
    const bool cfg = doc.contains("dataset") && doc["dataset"].value("cfg", false);
    return !n.t2i() && n.num_classes > 0 && cfg ? n.num_classes - 1 : -1;
  };
  NetworkFamily f;
  f.name = name;
  f.spec = [=](const nlohmann::json& doc) {
    NetConfig n = net_config_from_json(doc.at("nnet"));
    return uvit_spec(n, null_class(doc, n));
  };
  f.table = [](const nlohmann::json& nnet) {
    return build_param_table(net_config_from_json(nnet));
  };
  f.flops = [](const nlohmann::json& nnet) { return forward_flops(net_config_from_json(nnet)); };
  f.create = [=](const nlohmann::json& doc, Backend& be) -> std::unique_ptr<Network> {
    NetConfig n = net_config_from_json(doc.at("nnet"));
    return std::make_unique<UViT>(n, be, null_class(doc, n));
  };
  f.full_config = [](const nlohmann::json& nnet) { return net_config_from_json(nnet).to_json(); };
  return f;
}

}  // namespace uvit
