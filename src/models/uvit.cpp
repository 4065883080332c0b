// U-ViT forward and backward (SPEC 2-3), as explicit layer calls over planned buffers.
// Token order: class-conditional [label, time, patches]; unconditional [time, patches];
// text-to-image [time, context x num_clip_token, patches]. Long skips pair LIFO.
#include <algorithm>
#include <climits>
#include <cmath>

#include "uvit/error.hpp"
#include "uvit/io.hpp"
#include "uvit/model.hpp"
#include "uvit/rng.hpp"

namespace uvit {

namespace {
constexpr size_t kAbsent = SIZE_MAX;
constexpr float kLnEps = 1e-5f;

struct BlockW {
  size_t norm1_w, norm1_b, qkv_w, qkv_b, proj_w, proj_b, norm2_w, norm2_b, fc1_w, fc1_b, fc2_w,
      fc2_b, skip_w = kAbsent, skip_b = kAbsent;
};

struct BlockActs {
  const float* xs = nullptr;  // block stream input (after skip_linear when present)
  float* xs_buf = nullptr;    // owned storage for xs in skip blocks
  float *h1, *mean1, *rstd1, *qkv, *att, *lse, *x2, *h2, *mean2, *rstd2, *f, *g;
};
}  // namespace

struct UViT::Plan {
  int B = 0;
  bool train = false, ckpt = false;
  void* arena = nullptr;
  size_t bytes = 0;
  // inputs of the last forward, kept for backward
  const float* x = nullptr;
  const float* t = nullptr;
  const int32_t* y = nullptr;
  const float* ctx = nullptr;  // the context as act (the input itself when act is fp32)
  // forward buffers
  float *cols, *patches, *extras, *temb, *th, *ts, *normout, *nmean, *nrstd, *tok, *img, *ctx_act;
  std::vector<float*> stream;  // stream[k] = input of block k; stream[nblocks] = last output
  std::vector<BlockActs> acts;
  // backward buffers
  float *dX, *dX2, *dG, *dH, *dQKV, *dA, *dtok, *dimg, *dextras, *dpatches, *dth;
  std::vector<float*> dskip;
  // weight offsets
  std::vector<BlockW> bw;
};

namespace {
BlockW block_offsets(const ParamTable& t, const std::string& p) {
  auto off = [&](const std::string& n) {
    const ParamEntry* e = t.find(p + n);
    return e ? e->offset : kAbsent;
  };
  BlockW w;
  w.norm1_w = off(".norm1.weight");
  w.norm1_b = off(".norm1.bias");
  w.qkv_w = off(".attn.qkv.weight");
  w.qkv_b = off(".attn.qkv.bias");
  w.proj_w = off(".attn.proj.weight");
  w.proj_b = off(".attn.proj.bias");
  w.norm2_w = off(".norm2.weight");
  w.norm2_b = off(".norm2.bias");
  w.fc1_w = off(".mlp.fc1.weight");
  w.fc1_b = off(".mlp.fc1.bias");
  w.fc2_w = off(".mlp.fc2.weight");
  w.fc2_b = off(".mlp.fc2.bias");
  w.skip_w = off(".skip_linear.weight");
  w.skip_b = off(".skip_linear.bias");
  return w;
}

// dx[M,K] (=, or += with beta 1) dy[M,N] W[N,K] (act);  dW[N,K] (fp32) += dy^T x.
void linear_dx(Backend& be, const float* dy, int ldy, const float* w, int ldw, float* dx, int ldx,
               int M, int N, int K, float beta = 0.f) {
  be.gemm(false, false, M, K, N, 1.f, dy, ldy, w, ldw, beta, dx, ldx);
}
void linear_dw(Backend& be, const float* dy, int ldy, const float* x, int ldx, float* dw, int ldw,
               int M, int N, int K) {
  be.gemm_wgrad(N, K, M, dy, ldy, x, ldx, dw, ldw);
}
}  // namespace

UViT::UViT(const NetConfig& cfg, Backend& be) : cfg_(cfg), be_(be), table_(build_param_table(cfg)) {
  params_ = be_.alloc(table_.total());
  be_.fill(params_, 0.f, table_.total());
  act_params_ = params_;
  if (be_.act_bytes() != sizeof(float))
    act_params_ = static_cast<float*>(be_.alloc_bytes(table_.total() * be_.act_bytes()));
}

UViT::~UViT() {
  if (plan_ && plan_->arena) be_.free_bytes(plan_->arena);
  if (grads_) be_.free_bytes(grads_);
  if (act_params_ != params_) be_.free_bytes(act_params_);
  be_.free_bytes(params_);
}

void UViT::sync_act_params() {
  if (act_stale_ && act_params_ != params_) be_.to_act(params_, act_params_, table_.total());
  act_stale_ = false;
}

float* UViT::grads() {
  if (!grads_) {
    grads_ = be_.alloc(table_.total());
    be_.fill(grads_, 0.f, table_.total());
  }
  return grads_;
}

void UViT::zero_grad() { be_.fill(grads(), 0.f, table_.total()); }

void UViT::load(const NamedArrays& sd, const std::string& what) {
  std::vector<float> host(table_.total());
  table_.load(sd, host.data(), what);
  be_.upload(params_, host.data(), host.size() * sizeof(float));
  act_stale_ = true;
}

void UViT::load_file(const std::string& path) { load(load_weights(path), path); }

NamedArrays UViT::export_weights(DType dtype) const {
  std::vector<float> host(table_.total());
  be_.download(host.data(), params_, host.size() * sizeof(float));
  return table_.export_arrays(host.data(), dtype);
}

void UViT::init_random(uint64_t seed) {
  std::vector<float> host(table_.total(), 0.f);
  uint64_t stream = 0;
  for (const auto& e : table_.entries()) {
    Philox rng(seed, stream++);
    float* p = host.data() + e.offset;
    auto ends_with = [&](const char* s) {
      std::string n = e.name, suf = s;
      return n.size() >= suf.size() && n.compare(n.size() - suf.size(), suf.size(), suf) == 0;
    };
    const bool conv =
        e.name.rfind("patch_embed.proj", 0) == 0 || e.name.rfind("final_layer", 0) == 0;
    if (conv) {
      // PyTorch's Conv2d default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
      const auto& w = table_.at(e.name.substr(0, e.name.rfind('.')) + ".weight");
      const double fan_in = double(w.numel) / double(w.shape[0]);
      const double bound = 1.0 / std::sqrt(fan_in);
      for (size_t i = 0; i < e.numel; ++i) p[i] = float((2.0 * rng.uniform(i) - 1.0) * bound);
    } else if (e.name == "label_emb.weight") {
      for (size_t i = 0; i < e.numel; ++i) p[i] = rng.normal(i);  // nn.Embedding default N(0, 1)
    } else if (e.shape.size() == 1 && (e.name.find("norm") != std::string::npos) &&
               ends_with(".weight")) {
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
  }
  be_.upload(params_, host.data(), host.size() * sizeof(float));
  act_stale_ = true;
}

void UViT::plan(int B, bool train) {
  const bool ckpt = train && cfg_.use_checkpoint;
  if (plan_ && plan_->B == B && plan_->train == train && plan_->ckpt == ckpt) return;
  if (plan_ && plan_->arena) be_.free_bytes(plan_->arena);
  plan_ = std::make_unique<Plan>();
  Plan& P = *plan_;
  P.B = B;
  P.train = train;
  P.ckpt = ckpt;
  const size_t D = cfg_.embed_dim, N = cfg_.tokens(), M = size_t(B) * N, L = cfg_.num_patches();
  const size_t E = cfg_.extras(), Hd = cfg_.mlp_hidden(), nh = cfg_.num_heads;
  const size_t C = cfg_.in_chans, S = cfg_.img_size, pd = cfg_.patch_dim();
  const int nin = cfg_.blocks_per_side(), nblocks = 2 * nin + 1;

  // Two passes: size everything with a null base, then carve one allocation (256-byte aligned).
  // take() holds act elements, take32() fp32 ones (statistics, the image-space head).
  char* base = nullptr;
  size_t used = 0;
  auto take_bytes = [&](size_t bytes) -> float* {
    float* p = reinterpret_cast<float*>(base ? base + used : nullptr);
    used += (bytes + 255) / 256 * 256;
    return p;
  };
  const size_t ab = be_.act_bytes();
  auto take = [&](size_t n) { return take_bytes(n * ab); };
  auto take32 = [&](size_t n) { return take_bytes(n * sizeof(float)); };
  for (int pass = 0; pass < 2; ++pass) {
    used = 0;
    P.cols = take(size_t(B) * L * C * cfg_.patch_size * cfg_.patch_size);
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
      float* a = take(M * D);
      float* b = take(M * D);
      for (int k = nin + 1; k <= nblocks; ++k) P.stream[k] = ((k - nin) % 2) ? a : b;
    }
    const int nacts = (train && !ckpt) ? nblocks : 1;
    P.acts.assign(nacts, BlockActs{});
    for (auto& A : P.acts) {
      A.xs_buf = cfg_.skip ? take(M * D) : nullptr;
      A.h1 = take(M * D);
      A.mean1 = take32(M);
      A.rstd1 = take32(M);
      A.qkv = take(M * 3 * D);
      A.att = take(M * D);
      A.lse = take32(size_t(B) * nh * N);
      A.x2 = take(M * D);
      A.h2 = take(M * D);
      A.mean2 = take32(M);
      A.rstd2 = take32(M);
      A.f = take(M * Hd);
      A.g = take(M * Hd);
    }
    P.normout = take(M * D);
    P.nmean = take32(M);
    P.nrstd = take32(M);
    P.tok = take(M * pd);
    P.img = cfg_.conv ? take32(size_t(B) * C * S * S) : nullptr;
    P.ctx_act = (cfg_.t2i() && ab != sizeof(float))
                    ? take(size_t(B) * cfg_.num_clip_token * cfg_.clip_dim)
                    : nullptr;
    if (train) {
      P.dX = take(M * D);
      P.dX2 = take(M * D);
      P.dG = take(M * Hd);
      P.dH = take(M * D);
      P.dQKV = take(M * 3 * D);
      P.dA = take(M * D);
      P.dtok = take(M * pd);
      P.dimg = cfg_.conv ? take32(size_t(B) * C * S * S) : nullptr;
      P.dextras = take(size_t(B) * E * D);
      P.dpatches = take(size_t(B) * L * D);
      P.dth = cfg_.mlp_time_embed ? take(size_t(B) * 4 * D) : nullptr;
      P.dskip.assign(nin, nullptr);
      for (auto& d : P.dskip) d = take(M * D);
    }
    if (pass == 0) {
      P.arena = be_.alloc_bytes(used);
      base = static_cast<char*>(P.arena);
    }
  }
  P.bytes = used;
  arena_bytes_ = used;
  P.bw.clear();
  for (int i = 0; i < nin; ++i) P.bw.push_back(block_offsets(table_, cat("in_blocks.", i)));
  P.bw.push_back(block_offsets(table_, "mid_block"));
  for (int i = 0; i < nin; ++i) P.bw.push_back(block_offsets(table_, cat("out_blocks.", i)));
}

void UViT::block_forward(int k, const float* skip, bool keep) {
  Plan& P = *plan_;
  BlockActs& A = P.acts[keep && !P.ckpt ? k : 0];
  const BlockW& w = P.bw[k];
  auto wa = [&](size_t off) { return be_.act_at(act_params_, off); };  // act weights
  const float* W = params_;
  const int D = cfg_.embed_dim, Hd = cfg_.mlp_hidden(), M = P.B * cfg_.tokens();
  const float* xin = P.stream[k];
  float* out = P.stream[k + 1];

  if (w.skip_w != kAbsent) {
    // skip_linear(concat([x, skip])): weight columns [:D] multiply x, [D:] multiply the skip.
    be_.linear(xin, D, wa(w.skip_w), 2 * D, nullptr, nullptr, A.xs_buf, D, M, D, D);
    be_.linear(skip, D, wa(w.skip_w + D), 2 * D, wa(w.skip_b), A.xs_buf, A.xs_buf, D, M, D, D);
    A.xs = A.xs_buf;
  } else {
    A.xs = xin;
  }
  be_.layernorm_fwd(A.xs, W + w.norm1_w, W + w.norm1_b, A.h1, A.mean1, A.rstd1, M, D, kLnEps);
  be_.linear(A.h1, D, wa(w.qkv_w), D, w.qkv_b != kAbsent ? wa(w.qkv_b) : nullptr, nullptr, A.qkv,
             3 * D, M, 3 * D, D);
  be_.attention_fwd(A.qkv, A.att, A.lse, P.B, cfg_.tokens(), cfg_.num_heads, cfg_.head_dim(),
                    cfg_.attn_scale());
  be_.linear(A.att, D, wa(w.proj_w), D, wa(w.proj_b), A.xs, A.x2, D, M, D, D);
  be_.layernorm_fwd(A.x2, W + w.norm2_w, W + w.norm2_b, A.h2, A.mean2, A.rstd2, M, D, kLnEps);
  be_.linear(A.h2, D, wa(w.fc1_w), D, wa(w.fc1_b), nullptr, A.f, Hd, M, Hd, D);
  be_.gelu_fwd(A.f, A.g, size_t(M) * Hd);
  be_.linear(A.g, Hd, wa(w.fc2_w), Hd, wa(w.fc2_b), A.x2, out, D, M, D, Hd);
}

void UViT::forward(const float* x, const float* t, const int32_t* y, const float* context,
                   float* out, int B, bool train) {
  UVIT_CHECK(B > 0, "forward: batch size must be positive, got ", B);
  UVIT_CHECK(!cfg_.t2i() || context, "uvit_t2i forward needs a context");
  UVIT_CHECK(cfg_.t2i() || (cfg_.num_classes > 0) == (y != nullptr),
             cfg_.num_classes > 0 ? "a class-conditional network needs class labels y"
                                  : "an unconditional network takes no class labels");
  plan(B, train);
  sync_act_params();
  Plan& P = *plan_;
  P.x = x;
  P.t = t;
  P.y = y;
  P.ctx = context;
  const float* W = params_;
  auto off = [&](const char* n) { return table_.at(n).offset; };
  auto wa = [&](const char* n) { return be_.act_at(act_params_, off(n)); };
  const int D = cfg_.embed_dim, C = cfg_.in_chans, S = cfg_.img_size, p = cfg_.patch_size;
  const int L = cfg_.num_patches(), E = cfg_.extras(), N = cfg_.tokens(), M = B * N;
  const int cpp = C * p * p;

  // Patch embedding as im2col + GEMM.
  be_.patch_im2col(x, P.cols, B, C, S, p);
  be_.linear(P.cols, cpp, wa("patch_embed.proj.weight"), cpp, wa("patch_embed.proj.bias"), nullptr,
             P.patches, D, B * L, D, cpp);

  // Extra tokens.
  const int time_row = (!cfg_.t2i() && cfg_.num_classes > 0) ? 1 : 0;
  float* time_tok = be_.act_at(P.extras, size_t(time_row) * D);
  if (cfg_.mlp_time_embed) {
    be_.timestep_embedding(t, P.temb, B, D, D);
    be_.linear(P.temb, D, wa("time_embed.0.weight"), D, wa("time_embed.0.bias"), nullptr, P.th,
               4 * D, B, 4 * D, D);
    be_.silu_fwd(P.th, P.ts, size_t(B) * 4 * D);
    be_.linear(P.ts, 4 * D, wa("time_embed.2.weight"), 4 * D, wa("time_embed.2.bias"), nullptr,
               time_tok, E * D, B, D, 4 * D);
  } else {
    be_.timestep_embedding(t, time_tok, B, D, E * D);
  }
  if (cfg_.t2i()) {
    const int nc = cfg_.num_clip_token, cd = cfg_.clip_dim;
    if (P.ctx_act) {
      be_.to_act(context, P.ctx_act, size_t(B) * nc * cd);
      P.ctx = P.ctx_act;
    }
    for (int b = 0; b < B; ++b) {
      float* dst = be_.act_at(P.extras, (size_t(b) * E + 1) * D);
      be_.linear(be_.act_at(P.ctx, size_t(b) * nc * cd), cd, wa("context_embed.weight"), cd,
                 wa("context_embed.bias"), nullptr, dst, D, nc, D, cd);
    }
  } else if (cfg_.num_classes > 0) {
    be_.embedding_fwd(W + off("label_emb.weight"), y, P.extras, B, D, E * D);
  }
  be_.tokens_fwd(P.extras, P.patches, W + off("pos_embed"), P.stream[0], B, E, L, D);

  // Blocks: in-block outputs are the long skips, consumed LIFO by the out blocks.
  const int nin = cfg_.blocks_per_side();
  for (int k = 0; k < 2 * nin + 1; ++k) {
    const float* skip = k > nin ? P.stream[2 * nin - k + 1] : nullptr;
    block_forward(k, skip, train);
  }

  // Head: norm -> decoder_pred -> drop extras + unpatchify -> final conv.
  const int last = 2 * nin + 1, pd = cfg_.patch_dim();
  be_.layernorm_fwd(P.stream[last], W + off("norm.weight"), W + off("norm.bias"), P.normout,
                    P.nmean, P.nrstd, M, D, kLnEps);
  be_.linear(P.normout, D, wa("decoder_pred.weight"), D, wa("decoder_pred.bias"), nullptr, P.tok,
             pd, M, pd, D);
  if (cfg_.conv) {
    be_.unpatchify_fwd(P.tok, P.img, B, E, C, S, p);
    be_.conv3x3_fwd(P.img, W + off("final_layer.weight"), W + off("final_layer.bias"), out, B, C, C,
                    S, S);
  } else {
    be_.unpatchify_fwd(P.tok, out, B, E, C, S, p);
  }
}

void UViT::block_backward(int k, const float* skip, float* dskip) {
  Plan& P = *plan_;
  if (P.ckpt) block_forward(k, skip, true);  // recompute this block's activations
  BlockActs& A = P.acts[P.ckpt ? 0 : k];
  const BlockW& w = P.bw[k];
  auto wa = [&](size_t off) { return be_.act_at(act_params_, off); };
  const float* W = params_;
  float* G = grads_;
  const int D = cfg_.embed_dim, Hd = cfg_.mlp_hidden(), M = P.B * cfg_.tokens();
  float* dX = P.dX;  // in: d(block output); out: d(block input)

  // out = x2 + fc2(gelu(fc1(norm2(x2))))
  be_.bias_grad(dX, G + w.fc2_b, M, D);
  linear_dw(be_, dX, D, A.g, Hd, G + w.fc2_w, Hd, M, D, Hd);
  linear_dx(be_, dX, D, wa(w.fc2_w), Hd, P.dG, Hd, M, D, Hd);
  be_.gelu_bwd(P.dG, A.f, P.dG, size_t(M) * Hd);
  be_.bias_grad(P.dG, G + w.fc1_b, M, Hd);
  linear_dw(be_, P.dG, Hd, A.h2, D, G + w.fc1_w, D, M, Hd, D);
  linear_dx(be_, P.dG, Hd, wa(w.fc1_w), D, P.dH, D, M, Hd, D);
  be_.layernorm_bwd(P.dH, A.x2, W + w.norm2_w, A.mean2, A.rstd2, dX, G + w.norm2_w, G + w.norm2_b,
                    M, D);
  // x2 = xs + proj(attn(qkv(norm1(xs))))
  be_.bias_grad(dX, G + w.proj_b, M, D);
  linear_dw(be_, dX, D, A.att, D, G + w.proj_w, D, M, D, D);
  linear_dx(be_, dX, D, wa(w.proj_w), D, P.dA, D, M, D, D);
  be_.attention_bwd(P.dA, A.qkv, A.att, A.lse, P.dQKV, P.B, cfg_.tokens(), cfg_.num_heads,
                    cfg_.head_dim(), cfg_.attn_scale());
  if (w.qkv_b != kAbsent) be_.bias_grad(P.dQKV, G + w.qkv_b, M, 3 * D);
  linear_dw(be_, P.dQKV, 3 * D, A.h1, D, G + w.qkv_w, D, M, 3 * D, D);
  linear_dx(be_, P.dQKV, 3 * D, wa(w.qkv_w), D, P.dH, D, M, 3 * D, D);
  be_.layernorm_bwd(P.dH, A.xs, W + w.norm1_w, A.mean1, A.rstd1, dX, G + w.norm1_w, G + w.norm1_b,
                    M, D);
  if (w.skip_w != kAbsent) {
    const float* xin = P.stream[k];
    be_.bias_grad(dX, G + w.skip_b, M, D);
    linear_dw(be_, dX, D, xin, D, G + w.skip_w, 2 * D, M, D, D);
    linear_dw(be_, dX, D, skip, D, G + w.skip_w + D, 2 * D, M, D, D);
    linear_dx(be_, dX, D, wa(w.skip_w + D), 2 * D, dskip, D, M, D, D);
    linear_dx(be_, dX, D, wa(w.skip_w), 2 * D, P.dX2, D, M, D, D);
    std::swap(P.dX, P.dX2);
  }
}

void UViT::backward(const float* dout) {
  UVIT_CHECK(plan_ && plan_->train, "backward() needs a preceding forward(..., train=true)");
  Plan& P = *plan_;
  grads();
  const float* W = params_;
  float* G = grads_;
  auto off = [&](const char* n) { return table_.at(n).offset; };
  auto wa = [&](const char* n) { return be_.act_at(act_params_, off(n)); };
  const int B = P.B, D = cfg_.embed_dim, C = cfg_.in_chans, S = cfg_.img_size, p = cfg_.patch_size;
  const int L = cfg_.num_patches(), E = cfg_.extras(), N = cfg_.tokens(), M = B * N;
  const int nin = cfg_.blocks_per_side(), last = 2 * nin + 1, pd = cfg_.patch_dim();

  // Head.
  const float* dimg = dout;
  if (cfg_.conv) {
    be_.conv3x3_bwd(dout, P.img, W + off("final_layer.weight"), P.dimg,
                    G + off("final_layer.weight"), G + off("final_layer.bias"), B, C, C, S, S);
    dimg = P.dimg;
  }
  be_.unpatchify_bwd(dimg, P.dtok, B, E, C, S, p);
  be_.bias_grad(P.dtok, G + off("decoder_pred.bias"), M, pd);
  linear_dw(be_, P.dtok, pd, P.normout, D, G + off("decoder_pred.weight"), D, M, pd, D);
  linear_dx(be_, P.dtok, pd, wa("decoder_pred.weight"), D, P.dH, D, M, pd, D);
  be_.zero_act(P.dX, size_t(M) * D);
  be_.layernorm_bwd(P.dH, P.stream[last], W + off("norm.weight"), P.nmean, P.nrstd, P.dX,
                    G + off("norm.weight"), G + off("norm.bias"), M, D);

  // Blocks in reverse; an in-block's output also receives its out-block's skip gradient.
  for (int k = last - 1; k >= 0; --k) {
    if (k < nin && cfg_.skip) be_.axpy_act(P.dX, P.dskip[k], 1.f, size_t(M) * D);
    const int pair =
        2 * nin - k + 1;  // out block k consumes stream[pair], in-block pair-1's output
    const float* skip = k > nin ? P.stream[pair] : nullptr;
    float* dskip = k > nin ? P.dskip[pair - 1] : nullptr;
    block_backward(k, skip, dskip);
  }

  // Tokens and embeddings.
  be_.tokens_bwd(P.dX, P.dextras, P.dpatches, G + off("pos_embed"), B, E, L, D);
  const int cpp = C * p * p;
  be_.bias_grad(P.dpatches, G + off("patch_embed.proj.bias"), B * L, D);
  linear_dw(be_, P.dpatches, D, P.cols, cpp, G + off("patch_embed.proj.weight"), cpp, B * L, D,
            cpp);
  const int time_row = (!cfg_.t2i() && cfg_.num_classes > 0) ? 1 : 0;
  if (cfg_.mlp_time_embed) {
    const float* dtt = be_.act_at(P.dextras, size_t(time_row) * D);
    for (int b = 0; b < B; ++b)
      be_.bias_grad(be_.act_at(dtt, size_t(b) * E * D), G + off("time_embed.2.bias"), 1, D);
    linear_dw(be_, dtt, E * D, P.ts, 4 * D, G + off("time_embed.2.weight"), 4 * D, B, D, 4 * D);
    linear_dx(be_, dtt, E * D, wa("time_embed.2.weight"), 4 * D, P.dth, 4 * D, B, D, 4 * D);
    be_.silu_bwd(P.dth, P.th, P.dth, size_t(B) * 4 * D);
    be_.bias_grad(P.dth, G + off("time_embed.0.bias"), B, 4 * D);
    linear_dw(be_, P.dth, 4 * D, P.temb, D, G + off("time_embed.0.weight"), D, B, 4 * D, D);
  }
  if (cfg_.t2i()) {
    const int nc = cfg_.num_clip_token, cd = cfg_.clip_dim;
    for (int b = 0; b < B; ++b) {
      const float* d = be_.act_at(P.dextras, (size_t(b) * E + 1) * D);
      be_.bias_grad(d, G + off("context_embed.bias"), nc, D);
      linear_dw(be_, d, D, be_.act_at(P.ctx, size_t(b) * nc * cd), cd,
                G + off("context_embed.weight"), cd, nc, D, cd);
    }
  } else if (cfg_.num_classes > 0) {
    be_.embedding_bwd(P.dextras, P.y, G + off("label_emb.weight"), B, D, E * D);
  }
}

}  // namespace uvit
