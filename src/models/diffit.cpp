// Latent DiffiT (NVlabs/DiffiT diffit/diffit.py `DiffiT`; arXiv 2312.02139 §3.2): a ViT of DiffiT
// blocks on patchified latents. No adaLN: the conditioning c = t_embedder(t) + y_embedder(y) (the
// paper's time token) enters every block only through TMSA, whose q, k, v are qkv(LN(x)) plus one
// per-sample row qkv_temb(c) broadcast to all tokens, with a learned relative position bias over
// the whole grid (window = grid). x = x + TMSA(LN(x), c); x = x + MLP(LN(x)); final LN -> SiLU ->
// Linear -> unpatchify. docs/diffit.md has every equation and its source.
#include <algorithm>

#include "models/adaln.hpp"
#include "models/families.hpp"
#include "models/layers.hpp"
#include "models/planned_network.hpp"
#include "uvit/config.hpp"
#include "uvit/error.hpp"
#include "uvit/rng.hpp"

namespace uvit {

using namespace layers;
using nlohmann::json;

namespace {

constexpr float kLnEps = 1e-6f;  // norm1, norm2, norm_final (elementwise_affine=False)

// The constructor arguments with the official names and defaults (DiffiT-XL/2 is `Diffit()`:
// depth 28 over the signature's 30).
struct DiffiTConfig {
  int input_size = 32, patch_size = 2, in_channels = 4, hidden_size = 1152, depth = 30,
      num_heads = 16, num_classes = 1000;
  double mlp_ratio = 4.0, class_dropout_prob = 0.1;
  bool learn_sigma = true;

  int out_channels() const { return learn_sigma ? 2 * in_channels : in_channels; }
  int grid() const { return input_size / patch_size; }  // window_size
  int tokens() const { return grid() * grid(); }
  int mlp_hidden() const { return int(hidden_size * mlp_ratio); }
  int label_rows() const { return num_classes + (class_dropout_prob > 0 ? 1 : 0); }
  int rel_rows() const { return (2 * grid() - 1) * (2 * grid() - 1); }

  json to_json() const {
    json j = dit_args_json("diffit", *this);
    j["mask_ratio"] = nullptr;
    j["decode_layer"] = nullptr;
    return j;
  }
};

DiffiTConfig parse(const json& j) {
  const DiffiTConfig c = parse_dit_nnet<DiffiTConfig>(
      j, "diffit", [](DiffiTConfig&, const std::string& k, const json& v, const std::string& f) {
        if (k == "mask_ratio" || k == "decode_layer")
          // Accepted by the official constructor and never read there.
          UVIT_CHECK(v.is_null(), f, ": only null is supported (DiffiT does not use it)");
        else
          fail(f, ": unknown key (not an argument of DiffiT)");
      });
  // The relative index is a buffer of L^2 entries (read as int32 and fp32), as MDT's.
  UVIT_CHECK(c.tokens() <= 4096, "nnet: ", c.tokens(),
             " tokens exceed the relative position bias's limit of 4096");
  return c;
}

// The official state_dict: the module's own pos_embed, x_embedder, t_embedder, y_embedder, the
// blocks (attn: its own relative_position_bias_table, then the relative_position_index buffer,
// then the submodules qkv_temb, qkv, proj; mlp: fc1, fc2; the norms have no parameters), and
// final_layer.linear.
ParamTable diffit_table(const DiffiTConfig& c) {
  const int64_t D = c.hidden_size, L = c.tokens(), p = c.patch_size, F = c.mlp_hidden();
  ParamTable t;
  auto lin = [&](const std::string& n, int64_t out, int64_t in) {
    t.add(n + ".weight", {out, in});
    t.add(n + ".bias", {out});
  };
  t.add("pos_embed", {1, L, D}, /*frozen=*/true);
  t.add("x_embedder.proj.weight", {D, c.in_channels, p, p});
  t.add("x_embedder.proj.bias", {D});
  lin("t_embedder.mlp.0", D, kFreqDim);
  lin("t_embedder.mlp.2", D, D);
  t.add("y_embedder.embedding_table.weight", {c.label_rows(), D});
  for (int i = 0; i < c.depth; ++i) {
    const std::string b = cat("blocks.", i, ".attn.");
    t.add(b + "relative_position_bias_table", {c.rel_rows(), c.num_heads});
    t.add(b + "relative_position_index", {L, L}, /*frozen=*/true);
    lin(b + "qkv_temb", 3 * D, D);
    lin(b + "qkv", 3 * D, D);
    lin(b + "proj", D, D);
    lin(cat("blocks.", i, ".mlp.fc1"), F, D);
    lin(cat("blocks.", i, ".mlp.fc2"), D, F);
  }
  lin("final_layer.linear", p * p * c.out_channels(), D);
  return t;
}

double diffit_flops(const DiffiTConfig& c) {
  const double D = c.hidden_size, L = c.tokens(), p = c.patch_size;
  double f = 2 * L * D * c.in_channels * p * p;                        // patch embedding
  f += 2 * (kFreqDim * D + D * D);                                     // timestep MLP
  const double block = 2 * L * D * (3 * D + D + 2.0 * c.mlp_hidden())  // qkv, proj, MLP
                       + 4 * L * L * D                                 // scores, weighted sum
                       + 2 * D * 3 * D;                                // qkv_temb (one row)
  f += c.depth * block;
  f += 2 * L * D * p * p * c.out_channels();  // final linear
  return f;
}

NetSpec diffit_spec(const DiffiTConfig& c) {
  NetSpec s;
  s.name = "diffit";
  s.in_chans = c.in_channels;
  s.out_chans = c.out_channels();
  s.img_size = c.input_size;
  s.num_classes = c.label_rows();
  s.null_class = c.class_dropout_prob > 0 ? c.num_classes : -1;
  // forward_with_cfg: "three-channel classifier-free guidance" on model_out[:, :3], the rest from
  // the conditional pass.
  s.guidance_channels = std::min(3, c.out_channels());
  return s;
}

// A DiffiT block: TMSA sublayer, then the MLP sublayer, each pre-LN with a residual.
struct Block {
  Linear temb;  // attn.qkv_temb: c -> the time token's q, k, v part
  Attention attn;
  Mlp mlp;
};
struct BlockActs {
  float *off, *h1, *mean1, *rstd1, *x2, *h2, *mean2, *rstd2;
  AttentionActs attn;
  MlpActs mlp;
};

class DiffiT final : public PlannedNetwork {
 public:
  DiffiT(const DiffiTConfig& c, Backend& be)
      : PlannedNetwork(diffit_spec(c), diffit_table(c), be),
        c_(c),
        index_(relative_index_buffer(be, c.grid())) {
    ln_ = adaln_norm_consts(be_, consts_, c.hidden_size, kLnEps);
    const ParamTable& t = table_;
    patch_ = linear(t, "x_embedder.proj");
    cond_ = conditioning(t, c.hidden_size);
    final_ = linear(t, "final_layer.linear");
    for (int k = 0; k < c.depth; ++k) {
      const std::string p = cat("blocks.", k, ".");
      Block b;
      b.temb = linear(t, p + "attn.qkv_temb");
      b.attn = attention(t, p + "attn.", c.num_heads);
      use_relative_bias(b.attn, t.at(p + "attn.relative_position_bias_table").offset, c.rel_rows(),
                        index_.as<int32_t>(), c.tokens());
      b.mlp = mlp_gelu_tanh(t, p + "mlp.");
      blocks_.push_back(b);
    }
  }

  void init_random(uint64_t seed) override;
  void forward(const float* x, const float* t, const int32_t* y, const float* context, float* out,
               int B, bool train) override;
  void backward(const float* dout) override;
  double forward_flops() const override { return diffit_flops(c_); }

 protected:
  void check_loaded() override {
    // The relative_position_index buffers must hold the formula (the kernels use their own copy).
    for (int k = 0; k < c_.depth; ++k)
      check_relative_index(be_, params_, table_, cat("blocks.", k, ".attn.relative_position_index"),
                           c_.grid(), "docs/diffit.md", "a DiffiT");
  }

 private:
  void plan(int B, bool train) override;

  DiffiTConfig c_;
  DeviceBuffer consts_, index_;
  Norm ln_;
  Linear patch_, final_;
  Conditioning cond_;
  std::vector<Block> blocks_;

  // The plan of the last forward.
  float *cols_ = nullptr, *patches_ = nullptr;
  CondActs cond_acts_;
  std::vector<float*> stream_;  // stream_[k]: the input of block k (stream_[depth]: the output)
  std::vector<BlockActs> acts_;
  float *fh_ = nullptr, *fmean_ = nullptr, *frstd_ = nullptr, *fs_ = nullptr, *tok_ = nullptr;
  // Backward scratch: dX carries d(stream) down the blocks.
  float *dX_ = nullptr, *dH_ = nullptr, *dA_ = nullptr, *dQKV_ = nullptr, *dG_ = nullptr;
  float *doff32_ = nullptr, *doff_ = nullptr, *dtok_ = nullptr;
};

void DiffiT::init_random(uint64_t seed) {
  // _initialize_weights: xavier_uniform for every nn.Linear (qkv_temb included) with zero bias,
  // the patch conv xavier over [D, C p p], label table and timestep MLP N(0, 0.02), the final
  // linear zero (init_adaln's shared rules); the bias tables keep their trunc_normal_(std=.02)
  // (truncated at +-2 absolute: a plain normal) and pos_embed is the 2-D sin-cos table.
  const std::vector<int32_t> idx = relative_index(c_.grid());
  write_params(init_adaln(table_, seed, [&](const ParamEntry& e, const Philox& rng, float* p) {
    if (e.name == "pos_embed") {
      sincos_2d(p, c_.grid(), c_.hidden_size);
    } else if (e.name.ends_with("relative_position_bias_table")) {
      for (size_t i = 0; i < e.numel; ++i) p[i] = 0.02f * rng.normal(i);
    } else if (e.name.ends_with("relative_position_index")) {
      std::copy(idx.begin(), idx.end(), p);
    } else {
      return false;
    }
    return true;
  }));
}

void DiffiT::plan(int B, bool train) {
  if (!replan(B, train)) return;
  const size_t D = c_.hidden_size, L = c_.tokens(), M = size_t(B) * L;
  const size_t Cp = size_t(c_.in_channels) * c_.patch_size * c_.patch_size;
  const size_t Ct = size_t(c_.patch_size) * c_.patch_size * c_.out_channels();
  const size_t F = c_.mlp_hidden(), H = c_.num_heads;
  arena_->plan([&](Arena& a) {
    cols_ = a.act(M * Cp);
    patches_ = a.act(M * D);
    plan_conditioning(a, cond_acts_, B, int(D), train);
    stream_.assign(c_.depth + 1, nullptr);
    plan_streams(a, stream_, M * D, train, 0);
    acts_.assign(train ? c_.depth : 1, BlockActs{});
    for (auto& A : acts_) {
      A.off = a.act(size_t(B) * 3 * D);
      A.h1 = a.act(M * D);
      A.mean1 = a.f32(M);
      A.rstd1 = a.f32(M);
      A.attn.qkv = a.act(M * 3 * D);
      A.attn.att = a.act(M * D);
      A.attn.lse = a.f32(size_t(B) * H * L);
      A.x2 = a.act(M * D);
      A.h2 = a.act(M * D);
      A.mean2 = a.f32(M);
      A.rstd2 = a.f32(M);
      A.mlp.f = a.act(M * F);
      A.mlp.g = a.act(M * F);
    }
    fh_ = a.act(M * D);
    fmean_ = a.f32(M);
    frstd_ = a.f32(M);
    fs_ = a.act(M * D);
    tok_ = a.act(M * Ct);
    if (train) {
      dX_ = a.act(M * D);
      dH_ = a.act(M * D);
      dA_ = a.act(M * D);
      dQKV_ = a.act(M * 3 * D);
      dG_ = a.act(M * F);
      doff32_ = a.f32(size_t(B) * 3 * D);
      doff_ = a.act(size_t(B) * 3 * D);
      dtok_ = a.act(M * Ct);
    }
  });
}

void DiffiT::forward(const float* x, const float* t, const int32_t* y, const float* context,
                     float* out, int B, bool train) {
  const Weights W = begin_forward(y, context, B, train);
  const int D = c_.hidden_size, C = c_.in_channels, S = c_.input_size, p = c_.patch_size;
  const int L = c_.tokens(), M = B * L, Co = c_.out_channels();

  // x = x_embedder(x) + pos_embed; c = t_embedder(t) + y_embedder(y), the time token.
  be_.patch_im2col(x, cols_, B, C, S, p);
  linear_fwd(W, patch_, cols_, patch_.in, patches_, D, M);
  be_.tokens_fwd(nullptr, patches_, params_ + table_.at("pos_embed").offset, stream_[0], B, 0, L,
                 D);
  conditioning_fwd(W, cond_, t, y, cond_acts_, B);
  for (int k = 0; k < c_.depth; ++k) {
    const Block& w = blocks_[k];
    BlockActs& A = acts_[train ? k : 0];
    const float* xk = stream_[k];
    // x = x + TMSA(norm1(x), c): qkv(h) + qkv_temb(c) broadcast over the tokens.
    linear_fwd(W, w.temb, cond_acts_.c, D, A.off, 3 * D, B);
    A.attn.qkv_off = A.off;
    norm_fwd(W, ln_, xk, A.h1, A.mean1, A.rstd1, M);
    attention_fwd(W, w.attn, A.h1, A.attn, A.x2, xk, B, L);
    // x = x + mlp(norm2(x))
    norm_fwd(W, ln_, A.x2, A.h2, A.mean2, A.rstd2, M);
    mlp_fwd(W, w.mlp, A.h2, A.mlp, stream_[k + 1], A.x2, M);
  }
  // final_layer: linear(silu(norm_final(x))), then unpatchify (all out_channels).
  norm_fwd(W, ln_, stream_[c_.depth], fh_, fmean_, frstd_, M);
  be_.silu_fwd(fh_, fs_, size_t(M) * D);
  linear_fwd(W, final_, fs_, D, tok_, final_.out, M);
  be_.unpatchify_fwd(tok_, out, B, 0, Co, S, p);
}

void DiffiT::backward(const float* dout) {
  const Weights W = begin_backward();
  const int B = B_, D = c_.hidden_size, S = c_.input_size, p = c_.patch_size;
  const int L = c_.tokens(), M = B * L, Co = c_.out_channels();

  be_.unpatchify_bwd(dout, dtok_, B, 0, Co, S, p);
  linear_bwd(W, final_, fs_, D, dtok_, final_.out, dH_, D, M);
  grads_ready("final_layer.");  // train.overlap (docs/distributed.md, "Overlap")
  be_.silu_bwd(dH_, fh_, dH_, size_t(M) * D);
  be_.zero_act(dX_, size_t(M) * D);
  norm_bwd(W, ln_, dH_, stream_[c_.depth], fmean_, frstd_, dX_, M);

  // Every block's qkv_temb adds its d c into cond_acts_.dc.
  be_.zero_act(cond_acts_.dc, size_t(B) * D);
  for (int k = c_.depth - 1; k >= 0; --k) {
    const Block& w = blocks_[k];
    BlockActs& A = acts_[k];
    mlp_bwd(W, w.mlp, A.h2, A.mlp, dX_, dH_, dG_, M);
    norm_bwd(W, ln_, dH_, A.x2, A.mean2, A.rstd2, dX_, M);  // dX_ = d x2
    be_.fill(doff32_, 0.f, size_t(B) * 3 * D);
    A.attn.dqkv_off = doff32_;
    attention_bwd(W, w.attn, A.h1, A.attn, dX_, dH_, dA_, dQKV_, B, L);
    A.attn.dqkv_off = nullptr;
    norm_bwd(W, ln_, dH_, stream_[k], A.mean1, A.rstd1, dX_, M);  // dX_ = d x_k
    be_.to_act(doff32_, doff_, size_t(B) * 3 * D);
    linear_bwd(W, w.temb, cond_acts_.c, D, doff_, 3 * D, cond_acts_.dc, D, B, 1.f);
    grads_ready(cat("blocks.", k, "."));
  }
  // pos_embed is frozen (requires_grad=False): only the patch embedding learns from the tokens.
  linear_bwd(W, patch_, cols_, patch_.in, dX_, D, nullptr, 0, M);
  conditioning_bwd_c(W, cond_, cond_acts_, B);
}

}  // namespace

NetworkFamily diffit_family() {
  return config_family<DiffiT>("diffit", parse, diffit_spec, diffit_table, diffit_flops);
}

}  // namespace uvit
