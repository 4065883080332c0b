// DiT (facebookresearch/DiT models.py), Skip-DiT (OpenSparseLLMs/Skip-DiT
// class-to-image/models.py, DiT_skip) and LightningDiT (hustvl/LightningDiT
// models/lightningdit.py): patch tokens with a fixed 2-D sin-cos position, a conditioning vector c
// = t_emb + y_emb, adaLN-Zero blocks and an adaLN final layer; Skip-DiT adds depth/2 long skips
// fused before each deep block by Linear(LayerNorm(concat(x, skip))); LightningDiT swaps pieces of
// the same block (RMSNorm, SwiGLU, qk-norm, 2-D RoPE, adaLN without shift) and drops the sigma half
// of its output. docs/dit.md and docs/lightningdit.md have the facts this file relies on.
#include <algorithm>
#include <cmath>

#include "models/adaln.hpp"
#include "models/families.hpp"
#include "models/layers.hpp"
#include "uvit/config.hpp"
#include "uvit/error.hpp"
#include "uvit/rng.hpp"

namespace uvit {

using namespace layers;
using nlohmann::json;

namespace {

constexpr float kLnEps = 1e-6f;
// Skip-Cache (Skip-DiT class-to-image/models.py DiT_cache): cached calls run only the first and
// last kCacheBranch blocks; the cache is emptied once the timestep is <= kCacheCloseAt.
constexpr int kCacheBranch = 4;
constexpr float kCacheCloseAt = 20;

// The constructor arguments, official names and defaults (DiT.__init__, LightningDiT.__init__).
struct DiTConfig {
  std::string name = "dit";  // or "skip_dit", "lightningdit"
  int input_size = 32, patch_size = 2, in_channels = 4, hidden_size = 1152, depth = 28,
      num_heads = 16, num_classes = 1000;
  double mlp_ratio = 4.0, class_dropout_prob = 0.1;
  bool learn_sigma = true;
  // LightningDiT's switches (all off by default there, as in the official signature).
  bool use_qknorm = false, use_swiglu = false, use_rope = false, use_rmsnorm = false,
       wo_shift = false;

  explicit DiTConfig(const std::string& n = "dit") : name(n) {
    if (lightning()) {
      in_channels = 32;
      learn_sigma = false;
    }
  }
  bool skip() const { return name == "skip_dit"; }
  bool lightning() const { return name == "lightningdit"; }
  // The final linear's channels; LightningDiT's forward keeps only the first in_channels of them.
  int head_channels() const { return learn_sigma ? 2 * in_channels : in_channels; }
  int out_channels() const { return lightning() ? in_channels : head_channels(); }
  int grid() const { return input_size / patch_size; }
  int tokens() const { return grid() * grid(); }
  int head_dim() const { return hidden_size / num_heads; }
  int mlp_hidden() const { return int(hidden_size * mlp_ratio); }
  // SwiGLUFFN(D, int(2/3 * mlp_hidden_dim)): w12 has twice this many outputs.
  int swiglu_hidden() const { return int(2.0 / 3.0 * mlp_hidden()); }
  int fc1_out() const { return use_swiglu ? 2 * swiglu_hidden() : mlp_hidden(); }
  int fc2_in() const { return use_swiglu ? swiglu_hidden() : mlp_hidden(); }
  int mod_chunks() const { return wo_shift ? 4 : 6; }  // (scale, gate) x 2 without the shifts
  // LabelEmbedder: a null row after the classes when labels can be dropped.
  int label_rows() const { return num_classes + (class_dropout_prob > 0 ? 1 : 0); }

  json to_json() const {
    json j = {{"name", name},
              {"input_size", input_size},
              {"patch_size", patch_size},
              {"in_channels", in_channels},
              {"hidden_size", hidden_size},
              {"depth", depth},
              {"num_heads", num_heads},
              {"mlp_ratio", mlp_ratio},
              {"class_dropout_prob", class_dropout_prob},
              {"num_classes", num_classes},
              {"learn_sigma", learn_sigma}};
    if (lightning()) {
      j["use_qknorm"] = use_qknorm;
      j["use_swiglu"] = use_swiglu;
      j["use_rope"] = use_rope;
      j["use_rmsnorm"] = use_rmsnorm;
      j["wo_shift"] = wo_shift;
    }
    return j;
  }
};

DiTConfig parse(const json& j) {
  UVIT_CHECK(j.is_object(), "nnet: expected an object, got ", j.dump());
  DiTConfig c(j.contains("name") ? json_string(j["name"], "nnet.name") : std::string("dit"));
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const json& v = it.value();
    const std::string f = "nnet." + k;
    if (k == "name") continue;
    if (k == "input_size")
      c.input_size = json_int(v, f);
    else if (k == "patch_size")
      c.patch_size = json_int(v, f);
    else if (k == "in_channels")
      c.in_channels = json_int(v, f);
    else if (k == "hidden_size")
      c.hidden_size = json_int(v, f);
    else if (k == "depth")
      c.depth = json_int(v, f);
    else if (k == "num_heads")
      c.num_heads = json_int(v, f);
    else if (k == "num_classes")
      c.num_classes = json_int(v, f);
    else if (k == "mlp_ratio")
      c.mlp_ratio = json_number(v, f);
    else if (k == "class_dropout_prob")
      c.class_dropout_prob = json_number(v, f);
    else if (k == "learn_sigma")
      c.learn_sigma = json_bool(v, f);
    else if (c.lightning() && k == "use_qknorm")
      c.use_qknorm = json_bool(v, f);
    else if (c.lightning() && k == "use_swiglu")
      c.use_swiglu = json_bool(v, f);
    else if (c.lightning() && k == "use_rope")
      c.use_rope = json_bool(v, f);
    else if (c.lightning() && k == "use_rmsnorm")
      c.use_rmsnorm = json_bool(v, f);
    else if (c.lightning() && k == "wo_shift")
      c.wo_shift = json_bool(v, f);
    else if (c.lightning() && k == "use_checkpoint")
      // Activation checkpointing changes memory only; this engine keeps every block's activations.
      json_bool(v, f);
    else
      fail(f, ": unknown key (not an argument of ", c.name, ")");
  }
  check_dit_args(c.input_size, c.patch_size, c.in_channels, c.hidden_size, c.depth, c.num_heads,
                 c.num_classes, c.mlp_ratio, c.class_dropout_prob);
  UVIT_CHECK(!c.skip() || c.depth % 2 == 0, "nnet.depth ", c.depth,
             " must be even for skip_dit (depth/2 long skips)");
  UVIT_CHECK(c.tokens() <= (1 << 20), "nnet: ", c.tokens(), " tokens exceed the limit");
  UVIT_CHECK(!c.use_swiglu || c.swiglu_hidden() >= 1, "nnet.mlp_ratio ", c.mlp_ratio,
             " leaves SwiGLU no hidden features");
  // VisionRotaryEmbeddingFast(dim = head_dim / 2): dim/2 frequencies, each used twice per axis,
  // cover head_dim only when head_dim is a multiple of 4.
  UVIT_CHECK(!c.use_rope || c.head_dim() % 4 == 0, "nnet.use_rope needs a head size (hidden_size ",
             "/ num_heads) that is a multiple of 4, got ", c.head_dim());
  // The official qk-norm without use_rmsnorm is an affine LayerNorm (eps 1e-5) per head, which no
  // preset uses; only the RMSNorm form is implemented.
  UVIT_CHECK(!c.use_qknorm || c.use_rmsnorm,
             "nnet.use_qknorm without nnet.use_rmsnorm (a per-head LayerNorm) is not supported");
  return c;
}

// The official state_dict: the module's own parameter (pos_embed) first, then the submodules in
// registration order (DiT_skip registers its skip modules after the final layer; LightningDiT's
// feat_rope buffers follow the embedders, and its blocks register norm1, norm2, attn (qkv, q_norm,
// k_norm, proj), mlp, adaLN_modulation).
ParamTable dit_table(const DiTConfig& c) {
  const int64_t D = c.hidden_size, p = c.patch_size, Dh = c.head_dim();
  ParamTable t;
  t.add("pos_embed", {1, c.tokens(), D}, /*frozen=*/true);
  t.add("x_embedder.proj.weight", {D, c.in_channels, p, p});
  t.add("x_embedder.proj.bias", {D});
  t.add("t_embedder.mlp.0.weight", {D, kFreqDim});
  t.add("t_embedder.mlp.0.bias", {D});
  t.add("t_embedder.mlp.2.weight", {D, D});
  t.add("t_embedder.mlp.2.bias", {D});
  t.add("y_embedder.embedding_table.weight", {c.label_rows(), D});
  if (c.use_rope) {  // frozen tables [tokens, head_dim], persistent buffers of the state_dict
    t.add("feat_rope.freqs_cos", {c.tokens(), Dh}, /*frozen=*/true);
    t.add("feat_rope.freqs_sin", {c.tokens(), Dh}, /*frozen=*/true);
  }
  const std::string fc1 = c.use_swiglu ? "mlp.w12" : "mlp.fc1";
  const std::string fc2 = c.use_swiglu ? "mlp.w3" : "mlp.fc2";
  const int64_t F1 = c.fc1_out(), F2 = c.fc2_in(), Dm = c.mod_chunks() * D;
  for (int i = 0; i < c.depth; ++i) {
    const std::string b = cat("blocks.", i, ".");
    if (c.use_rmsnorm) {
      t.add(b + "norm1.weight", {D});
      t.add(b + "norm2.weight", {D});
    }
    t.add(b + "attn.qkv.weight", {3 * D, D});
    t.add(b + "attn.qkv.bias", {3 * D});
    if (c.use_qknorm) {
      t.add(b + "attn.q_norm.weight", {Dh});
      t.add(b + "attn.k_norm.weight", {Dh});
    }
    t.add(b + "attn.proj.weight", {D, D});
    t.add(b + "attn.proj.bias", {D});
    t.add(b + fc1 + ".weight", {F1, D});
    t.add(b + fc1 + ".bias", {F1});
    t.add(b + fc2 + ".weight", {D, F2});
    t.add(b + fc2 + ".bias", {D});
    t.add(b + "adaLN_modulation.1.weight", {Dm, D});
    t.add(b + "adaLN_modulation.1.bias", {Dm});
  }
  if (c.use_rmsnorm) t.add("final_layer.norm_final.weight", {D});
  t.add("final_layer.linear.weight", {int64_t(p * p * c.head_channels()), D});
  t.add("final_layer.linear.bias", {int64_t(p * p * c.head_channels())});
  t.add("final_layer.adaLN_modulation.1.weight", {2 * D, D});
  t.add("final_layer.adaLN_modulation.1.bias", {2 * D});
  if (c.skip()) {
    for (int i = 0; i < c.depth / 2; ++i) {
      t.add(cat("skip_norms.", i, ".weight"), {2 * D});
      t.add(cat("skip_norms.", i, ".bias"), {2 * D});
    }
    for (int i = 0; i < c.depth / 2; ++i) {
      t.add(cat("skip_linears.", i, ".linear.weight"), {D, 2 * D});
      t.add(cat("skip_linears.", i, ".linear.bias"), {D});
    }
  }
  return t;
}

double dit_flops(const DiTConfig& c) {
  const double D = c.hidden_size, L = c.tokens(), p = c.patch_size;
  double f = 2 * L * D * c.in_channels * p * p;                            // patch embedding
  f += 2 * (kFreqDim * D + D * D);                                         // timestep MLP
  const double block = 2 * L * D * (3 * D + D + c.fc1_out() + c.fc2_in())  // qkv, proj, MLP
                       + 4 * L * L * D                // scores and weighted sum
                       + 2 * D * c.mod_chunks() * D;  // adaLN
  f += c.depth * block;
  if (c.skip()) f += (c.depth / 2) * 2 * L * 2 * D * D;        // skip linears
  f += 2 * L * D * p * p * c.head_channels() + 2 * D * 2 * D;  // final layer
  return f;
}

NetSpec dit_spec(const DiTConfig& c) {
  NetSpec s;
  s.name = c.name;
  s.in_chans = c.in_channels;
  s.out_chans = c.out_channels();
  s.img_size = c.input_size;
  s.num_classes = c.label_rows();
  s.null_class = c.class_dropout_prob > 0 ? c.num_classes : -1;
  // forward_with_cfg guides model_out[:, :3] (the latent eps but its 4th channel) and takes the
  // rest from each half's own pass.
  s.guidance_channels = std::min(3, c.out_channels());
  return s;
}

// Per-block activations kept for backward: the adaLN-Zero block's, and Skip-DiT's fusion before it.
struct BlockActs {
  const float* xs = nullptr;  // block input: the stream, or the skip fusion's output
  float* fused = nullptr;     // storage of the fusion's output (skip_dit)
  float *cat = nullptr, *cat_n = nullptr, *cat_mean = nullptr, *cat_rstd = nullptr;  // skip fusion
  AdaLNActs blk;
};

struct BlockW {
  AdaLNBlock blk;
  bool fuse = false;  // Skip-DiT: x = skip_linear(skip_norm(concat(x, skip))) first
  Norm skip_norm;
  Linear skip_linear;
};

class DiT final : public Network {
 public:
  DiT(const DiTConfig& c, Backend& be)
      : Network(dit_spec(c), dit_table(c), be), c_(c), consts_(be, size_t(6) * c.hidden_size * 4) {
    // ones [2D], zeros [2D], and a sink [2D] for the non-affine LayerNorms' weight gradients.
    const size_t D = c.hidden_size;
    std::vector<float> h(6 * D, 0.f);
    std::fill(h.begin(), h.begin() + 2 * D, 1.f);
    be_.upload(consts_.f32(), h.data(), h.size() * 4);
    const float* one = consts_.f32();
    const float* zero = one + 2 * D;
    float* sink = consts_.f32() + 4 * D;
    ln_ = norm_no_affine(int(D), kLnEps, one, zero, sink);
    const ParamTable& t = table_;
    patch_ = linear(t, "x_embedder.proj");
    cond_ = conditioning(t, int(D));
    final_.norm = c.use_rmsnorm ? rms_norm(t, "final_layer.norm_final", int(D), kLnEps) : ln_;
    final_.ada = linear(t, "final_layer.adaLN_modulation.1");
    final_.linear = linear(t, "final_layer.linear");
    for (int k = 0; k < c.depth; ++k) {
      const std::string p = cat("blocks.", k, ".");
      BlockW w;
      AdaLNBlock& b = w.blk;
      b.wo_shift = c.wo_shift;
      b.ada = linear(t, p + "adaLN_modulation.1");
      b.norm1 = c.use_rmsnorm ? rms_norm(t, p + "norm1", int(D), kLnEps) : ln_;
      b.norm2 = c.use_rmsnorm ? rms_norm(t, p + "norm2", int(D), kLnEps) : ln_;
      b.attn.qkv = linear(t, p + "attn.qkv");
      b.attn.proj = linear(t, p + "attn.proj");
      b.attn.heads = c.num_heads;
      b.attn.head_dim = c.head_dim();
      b.attn.scale = float(1.0 / std::sqrt(double(c.head_dim())));
      if (c.use_qknorm) {
        b.attn.q_norm = rms_norm(t, p + "attn.q_norm", c.head_dim(), kLnEps);
        b.attn.k_norm = rms_norm(t, p + "attn.k_norm", c.head_dim(), kLnEps);
      }
      if (c.use_rope) {
        b.attn.rope_cos = t.at("feat_rope.freqs_cos").offset;
        b.attn.rope_sin = t.at("feat_rope.freqs_sin").offset;
      }
      b.mlp.fc1 = linear(t, p + (c.use_swiglu ? "mlp.w12" : "mlp.fc1"));
      b.mlp.fc2 = linear(t, p + (c.use_swiglu ? "mlp.w3" : "mlp.fc2"));
      b.mlp.act = Activation::GeluTanh;
      b.mlp.gated = c.use_swiglu;
      if (c.skip() && k >= c.depth / 2) {
        const int i = k - c.depth / 2;
        w.fuse = true;
        w.skip_norm = norm(t, cat("skip_norms.", i), 2 * int(D), kLnEps);
        w.skip_linear = linear(t, cat("skip_linears.", i, ".linear"));
      }
      blocks_.push_back(w);
    }
  }

  void init_random(uint64_t seed) override;
  void forward(const float* x, const float* t, const int32_t* y, const float* context, float* out,
               int B, bool train) override;
  void backward(const float* dout) override;
  size_t arena_bytes() const override { return arena_ ? arena_->size() : 0; }
  void set_skip_cache(int every) override {
    UVIT_CHECK(every <= 1 || (c_.skip() && c_.depth >= 2 * kCacheBranch), "--skip-cache: network ",
               c_.name, " of depth ", c_.depth,
               " has no Skip-Cache (skip_dit of depth >= ", 2 * kCacheBranch, ")");
    cache_every_ = every;
    cache_calls_ = 0;
    cache_valid_ = false;
  }
  double forward_flops() const override { return dit_flops(c_); }

 private:
  void plan(int B, bool train);
  // The input of deep block k >= depth/2 pops the output of block depth-1-k: stream[depth - k].
  int skip_stream(int k) const { return c_.depth - k; }
  // `input`: the block's input instead of stream_[k] (Skip-Cache's cached features).
  void block_forward(int k, BlockActs& A, const float* input = nullptr);
  void block_backward(int k, BlockActs& A);

  DiTConfig c_;
  DeviceBuffer consts_;
  Norm ln_;
  Linear patch_;
  Conditioning cond_;
  FinalLayer final_;
  std::vector<BlockW> blocks_;

  // The plan of the last forward.
  int B_ = 0;
  bool train_ = false;
  std::unique_ptr<Arena> arena_;
  float *cols_, *patches_;
  CondActs cond_acts_;
  FinalActs final_acts_;
  float* img_ = nullptr;        // LightningDiT with learn_sigma: the whole head output as an image
  std::vector<float*> stream_;  // stream_[k]: the output of block k-1 (stream_[0]: the tokens)
  std::vector<BlockActs> acts_;
  AdaLNGrads grads_acts_;
  float *dtok_, *dcat_, *dcatn_;
  std::vector<float*> dskip_;
  // Skip-Cache (DiT_cache.forward): the input of block depth - kCacheBranch from the last full
  // call.
  int cache_every_ = 0;
  long cache_calls_ = 0;
  DeviceBuffer cache_;
  int cache_B_ = 0;
  bool cache_valid_ = false;
};

void DiT::plan(int B, bool train) {
  if (arena_ && B_ == B && train_ == train) return;
  arena_.reset();
  arena_ = std::make_unique<Arena>(be_);
  B_ = B;
  train_ = train;
  const size_t D = c_.hidden_size, L = c_.tokens(), M = size_t(B) * L;
  const size_t cpp = size_t(c_.in_channels) * c_.patch_size * c_.patch_size;
  const size_t pd = size_t(c_.patch_size) * c_.patch_size * c_.head_channels();
  const size_t img = size_t(B) * c_.head_channels() * c_.input_size * c_.input_size;
  const bool drop_sigma = c_.out_channels() != c_.head_channels();
  const int depth = c_.depth, half = depth / 2;
  arena_->plan([&](Arena& a) {
    cols_ = a.act(M * cpp);
    patches_ = a.act(M * D);
    plan_conditioning(a, cond_acts_, B, int(D), train);
    stream_.assign(depth + 1, nullptr);
    if (train) {
      for (auto& s : stream_) s = a.act(M * D);
    } else {
      // Inference keeps the outputs the skips need and ping-pongs the rest.
      const int keep = c_.skip() ? half : 0;
      for (int k = 0; k <= keep; ++k) stream_[k] = a.act(M * D);
      float* p = a.act(M * D);
      float* q = a.act(M * D);
      for (int k = keep + 1; k <= depth; ++k) stream_[k] = ((k - keep) % 2) ? p : q;
    }
    acts_.assign(train ? depth : 1, BlockActs{});
    for (size_t k = 0; k < acts_.size(); ++k) {
      BlockActs& A = acts_[k];
      // Fusion buffers where a block fuses (training keeps one set per block; inference shares
      // one set, used by every deep block).
      if (train ? blocks_[k].fuse : c_.skip()) {
        A.fused = a.act(M * D);
        A.cat = a.act(M * 2 * D);
        A.cat_n = a.act(M * 2 * D);
        A.cat_mean = a.f32(M);
        A.cat_rstd = a.f32(M);
      }
      plan_block(a, blocks_[k].blk, A.blk, B, int(L));
    }
    plan_final(a, final_, final_acts_, B, int(L));
    img_ = drop_sigma ? a.f32(img) : nullptr;
    if (train) {
      plan_block_grads(a, blocks_[0].blk, grads_acts_, B, int(L));
      dtok_ = a.act(M * pd);
      dcat_ = c_.skip() ? a.act(M * 2 * D) : nullptr;
      dcatn_ = c_.skip() ? a.act(M * 2 * D) : nullptr;
      dskip_.assign(c_.skip() ? half : 0, nullptr);
      for (auto& d : dskip_) d = a.act(M * D);
    }
  });
}

void DiT::block_forward(int k, BlockActs& A, const float* input) {
  const BlockW& w = blocks_[k];
  const Weights W{be_, params_, act_params_, grads_, quant_.get()};
  const int B = B_, L = c_.tokens(), M = B * L, D = c_.hidden_size;
  A.xs = input ? input : stream_[k];
  if (w.fuse) {
    // x = skip_linear(skip_norm(concat([x, skip]))): replaces x (no residual).
    be_.copy_act_2d(A.cat, 2 * D, A.xs, D, M, D);
    be_.copy_act_2d(be_.act_at(A.cat, D), 2 * D, stream_[skip_stream(k)], D, M, D);
    norm_fwd(W, w.skip_norm, A.cat, A.cat_n, A.cat_mean, A.cat_rstd, M);
    linear_fwd(W, w.skip_linear, A.cat_n, 2 * D, A.fused, D, M);
    A.xs = A.fused;
  }
  block_fwd(W, w.blk, A.xs, cond_acts_.sc, A.blk, stream_[k + 1], B, L);
}

void DiT::forward(const float* x, const float* t, const int32_t* y, const float* context,
                  float* out, int B, bool train) {
  check_inputs(y, context, B);
  plan(B, train);
  act_params();
  const Weights W{be_, params_, act_params_, grads_, quant_.get()};
  const int D = c_.hidden_size, C = c_.in_channels, S = c_.input_size, p = c_.patch_size;
  const int L = c_.tokens(), M = B * L, Co = c_.head_channels();

  // Patch tokens plus the fixed position.
  be_.patch_im2col(x, cols_, B, C, S, p);
  linear_fwd(W, patch_, cols_, patch_.in, patches_, D, M);
  be_.tokens_fwd(nullptr, patches_, params_ + table_.at("pos_embed").offset, stream_[0], B, 0, L,
                 D);
  conditioning_fwd(W, cond_, t, y, cond_acts_, B);

  if (cache_every_ > 1 && !train) {
    // DiT_cache: a full call caches stream[depth - 4]; the others run blocks 0..3 (whose outputs
    // are the skips the last 4 blocks pop) and then the last 4 blocks from the cached input.
    const int deep = c_.depth - kCacheBranch;
    const size_t n = size_t(M) * D * be_.act_bytes();
    const bool full = cache_calls_ % cache_every_ == 0 || !cache_valid_ || cache_B_ != B;
    for (int k = 0; k < c_.depth; ++k) {
      if (!full && k >= kCacheBranch && k < deep) continue;
      if (k == deep && full) {
        if (!cache_.as() || cache_B_ != B) cache_ = DeviceBuffer(be_, n);
        cache_B_ = B;
        cache_valid_ = true;
        be_.copy_act(cache_.f32(), stream_[k], size_t(M) * D);
      }
      // (stream_[deep] may be a skip source, so the cached input is passed, not copied there.)
      block_forward(k, acts_[0], k == deep && !full ? cache_.f32() : nullptr);
    }
    ++cache_calls_;
    float t0 = 0;
    be_.download(&t0, t, sizeof(float));
    if (t0 <= kCacheCloseAt) set_skip_cache(cache_every_);
  } else {
    for (int k = 0; k < c_.depth; ++k) block_forward(k, acts_[train ? k : 0]);
  }

  final_fwd(W, final_, stream_[c_.depth], cond_acts_.sc, final_acts_, B, L);
  const float* tok = final_acts_.tok;
  if (img_) {
    // LightningDiT with learn_sigma: x, _ = x.chunk(2, dim=1), the first in_channels.
    const long n = long(c_.in_channels) * S * S;
    be_.unpatchify_fwd(tok, img_, B, 0, Co, S, p);
    be_.copy_2d(out, n, img_, 2 * n, B, n);
  } else {
    be_.unpatchify_fwd(tok, out, B, 0, Co, S, p);
  }
}

void DiT::block_backward(int k, BlockActs& A) {
  const BlockW& w = blocks_[k];
  const Weights W{be_, params_, act_params_, grads_, quant_.get()};
  const int B = B_, L = c_.tokens(), M = B * L, D = c_.hidden_size;
  const AdaLNGrads& G = grads_acts_;
  block_bwd(W, w.blk, A.blk, cond_acts_.sc, G, cond_acts_.dsc, B, L);
  if (w.fuse) {
    linear_bwd(W, w.skip_linear, A.cat_n, 2 * D, G.dX, D, dcatn_, 2 * D, M);
    be_.zero_act(dcat_, size_t(M) * 2 * D);
    norm_bwd(W, w.skip_norm, dcatn_, A.cat, A.cat_mean, A.cat_rstd, dcat_, M);
    be_.copy_act_2d(G.dX, D, dcat_, 2 * D, M, D);
    // The skip's half goes to the in-block whose output it was (added when that block is reached).
    be_.copy_act_2d(dskip_[c_.depth - 1 - k], D, be_.act_at(dcat_, D), 2 * D, M, D);
  }
}

void DiT::backward(const float* dout) {
  UVIT_CHECK(arena_ && train_, "backward() needs a preceding forward(..., train=true)");
  grads();
  const Weights W{be_, params_, act_params_, grads_, quant_.get()};
  const int B = B_, D = c_.hidden_size, S = c_.input_size, p = c_.patch_size;
  const int L = c_.tokens(), M = B * L, Co = c_.head_channels(), half = c_.depth / 2;
  const AdaLNGrads& G = grads_acts_;

  // Final layer (the dropped sigma channels get no gradient).
  if (img_) {
    const long n = long(c_.in_channels) * S * S;
    be_.fill(img_, 0.f, size_t(B) * 2 * n);
    be_.copy_2d(img_, 2 * n, dout, n, B, n);
    be_.unpatchify_bwd(img_, dtok_, B, 0, Co, S, p);
  } else {
    be_.unpatchify_bwd(dout, dtok_, B, 0, Co, S, p);
  }
  final_bwd(W, final_, stream_[c_.depth], cond_acts_.sc, final_acts_, dtok_, G, cond_acts_.dsc, B,
            L);

  // Blocks in reverse; a shallow block's output also receives its deep block's skip gradient.
  for (int k = c_.depth - 1; k >= 0; --k) {
    if (c_.skip() && k < half) be_.axpy_act(G.dX, dskip_[k], 1.f, size_t(M) * D);
    block_backward(k, acts_[k]);
  }

  // Tokens: the position is frozen (requires_grad=False), so only the patch embedding learns.
  linear_bwd(W, patch_, cols_, patch_.in, G.dX, D, nullptr, 0, M);
  conditioning_bwd(W, cond_, cond_acts_, B);
}

void DiT::init_random(uint64_t seed) {
  const std::vector<float> host =
      init_adaln(table_, seed, [&](const ParamEntry& e, const Philox& rng, float* p) {
        const std::string& n = e.name;
        if (n == "pos_embed") {
          sincos_2d(p, c_.grid(), c_.hidden_size);
        } else if (starts_with(n, "feat_rope.")) {
          rope_2d(p, c_.grid(), c_.head_dim(), ends_with(n, "cos"));
        } else if (starts_with(n, "skip_norms.")) {
          std::fill(p, p + e.numel, ends_with(n, ".weight") ? 1.f : 0.f);
        } else if (starts_with(n, "skip_linears.")) {
          // Created after initialize_weights: PyTorch's default Linear init, U(+-1/sqrt(fan_in)).
          const auto& w = table_.at(n.substr(0, n.rfind('.')) + ".weight");
          const double bound = 1.0 / std::sqrt(double(w.shape[1]));
          for (size_t i = 0; i < e.numel; ++i) p[i] = float((2.0 * rng.uniform(i) - 1.0) * bound);
        } else {
          return false;
        }
        return true;
      });
  be_.upload(params(), host.data(), host.size() * sizeof(float));
}

}  // namespace

NetworkFamily dit_family(const std::string& name) {
  NetworkFamily f;
  f.name = name;
  auto cfg = [name](const json& nnet) {
    DiTConfig c = parse(nnet);
    UVIT_CHECK(c.name == name, "nnet.name \"", c.name, "\" is not \"", name, "\"");
    return c;
  };
  f.spec = [cfg](const json& doc) { return dit_spec(cfg(doc.at("nnet"))); };
  f.table = [cfg](const json& nnet) { return dit_table(cfg(nnet)); };
  f.flops = [cfg](const json& nnet) { return dit_flops(cfg(nnet)); };
  f.create = [cfg](const json& doc, Backend& be) -> std::unique_ptr<Network> {
    return std::make_unique<DiT>(cfg(doc.at("nnet")), be);
  };
  f.full_config = [cfg](const json& nnet) { return cfg(nnet).to_json(); };
  return f;
}

}  // namespace uvit
