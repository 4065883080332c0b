// SVG's diffusion network (shiml20/SVG models/models_SVG.py `DiT`): DiT's adaLN-Zero block on
// per-token features. Each of the 16x16 DINOv3 (+ residual) feature vectors (392 channels) is one
// token through `ln1` = Linear(in_channels, D) (no patch conv), plus the fixed 2-D sin-cos
// position; the attention normalises q and k per head with an affine LayerNorm (eps 1e-5); the
// learned-sigma final layer has 2 C outputs of which the flow keeps the first C. docs/svg.md has
// the facts.
//
// Our input is the feature map [B, C, H, W] like every latent network: token h W + w is the
// official sequence's row (its (B, T, C) features are that map's permute(0, 2, 1)), so ln1 runs
// on the p = 1 im2col of the map and the output is unpatchified back to [B, C, H, W].
#include <cmath>

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

constexpr float kLnEps = 1e-6f;      // norm1, norm2, norm_final (elementwise_affine=False)
constexpr float kQkNormEps = 1e-5f;  // nn.LayerNorm(head_dim) default

// The constructor arguments with the official names; the defaults are SVG-XL's
// (config/example_svg_xl.yaml), as the signature's own (patch 2, 16 channels) do not run.
struct SvgConfig {
  int input_size = 16, patch_size = 1, in_channels = 392, hidden_size = 1152, depth = 28,
      num_heads = 16, num_classes = 1000;
  double mlp_ratio = 4.0, class_dropout_prob = 0.1;
  bool learn_sigma = true, qk_norm = true;

  int head_channels() const { return learn_sigma ? 2 * in_channels : in_channels; }
  int tokens() const { return input_size * input_size; }
  int head_dim() const { return hidden_size / num_heads; }
  int mlp_hidden() const { return int(hidden_size * mlp_ratio); }
  int label_rows() const { return num_classes + (class_dropout_prob > 0 ? 1 : 0); }

  json to_json() const {
    json j = dit_args_json("svg", *this);
    j["head_dim"] = nullptr;
    j["use_swiglu"] = false;
    j["qk_norm"] = qk_norm;
    return j;
  }
};

SvgConfig parse(const json& j) {
  int head_dim = 0;
  const SvgConfig c = parse_dit_nnet<SvgConfig>(
      j, "svg", [&](SvgConfig& cfg, const std::string& k, const json& v, const std::string& f) {
        if (k == "qk_norm")
          cfg.qk_norm = json_bool(v, f);
        else if (k == "head_dim")
          head_dim = v.is_null() ? 0 : json_int(v, f);
        else if (k == "use_swiglu")
          // MoeMLP is not defined in the released models_SVG.py: only the GELU Mlp runs.
          UVIT_CHECK(!json_bool(v, f), f, ": true is not supported (MoeMLP is not in the release)");
        else
          fail(f, ": unknown key (not an argument of svg)");
      });
  // Attention(head_dim=None) splits D evenly; another head size is not implemented.
  UVIT_CHECK(head_dim == 0 || long(head_dim) * c.num_heads == c.hidden_size,
             "nnet.head_dim: ", head_dim, " is not supported (only null: hidden_size / num_heads)");
  // ln1 embeds single tokens; the official final layer's p*p*out_channels with p > 1 would not
  // match what the flow code splits.
  UVIT_CHECK(c.patch_size == 1, "nnet.patch_size must be 1 for svg (ln1 embeds each token), got ",
             c.patch_size);
  UVIT_CHECK(c.tokens() <= (1 << 20), "nnet: ", c.tokens(), " tokens exceed the limit");
  return c;
}

// The official state_dict: the module's own parameter pos_embed first, then t_embedder,
// y_embedder, the blocks (attn: qkv, q_norm, k_norm, proj; mlp: fc1, fc2; adaLN_modulation.1;
// norm1/norm2 have no parameters), ln1 (registered after the blocks) and the final layer (linear
// before adaLN_modulation).
ParamTable svg_table(const SvgConfig& c) {
  const int64_t D = c.hidden_size, Dh = c.head_dim(), F = c.mlp_hidden();
  ParamTable t;
  auto lin = [&](const std::string& n, int64_t out, int64_t in) {
    t.add(n + ".weight", {out, in});
    t.add(n + ".bias", {out});
  };
  t.add("pos_embed", {1, c.tokens(), D}, /*frozen=*/true);
  lin("t_embedder.mlp.0", D, kFreqDim);
  lin("t_embedder.mlp.2", D, D);
  t.add("y_embedder.embedding_table.weight", {c.label_rows(), D});
  for (int i = 0; i < c.depth; ++i) {
    const std::string b = cat("blocks.", i, ".");
    lin(b + "attn.qkv", 3 * D, D);
    if (c.qk_norm) {
      t.add(b + "attn.q_norm.weight", {Dh});
      t.add(b + "attn.q_norm.bias", {Dh});
      t.add(b + "attn.k_norm.weight", {Dh});
      t.add(b + "attn.k_norm.bias", {Dh});
    }
    lin(b + "attn.proj", D, D);
    lin(b + "mlp.fc1", F, D);
    lin(b + "mlp.fc2", D, F);
    lin(b + "adaLN_modulation.1", 6 * D, D);
  }
  lin("ln1", D, c.in_channels);
  lin("final_layer.linear", c.head_channels(), D);
  lin("final_layer.adaLN_modulation.1", 2 * D, D);
  return t;
}

double svg_flops(const SvgConfig& c) {
  const double D = c.hidden_size, L = c.tokens();
  double f = 2 * L * D * c.in_channels;                                // ln1
  f += 2 * (kFreqDim * D + D * D);                                     // timestep MLP
  const double block = 2 * L * D * (3 * D + D + 2.0 * c.mlp_hidden())  // qkv, proj, MLP
                       + 4 * L * L * D                                 // scores, weighted sum
                       + 2 * D * 6 * D;                                // adaLN
  f += c.depth * block;
  f += 2 * L * D * c.head_channels() + 2 * D * 2 * D;  // final layer
  return f;
}

NetSpec svg_spec(const SvgConfig& c) {
  NetSpec s;
  s.name = "svg";
  s.in_chans = c.in_channels;
  s.out_chans = c.in_channels;  // the velocity: RectifiedFlow keeps the first half of 2 C
  s.img_size = c.input_size;
  s.num_classes = c.label_rows();
  s.null_class = c.class_dropout_prob > 0 ? c.num_classes : -1;
  // RectifiedFlow.sample guides the whole velocity: vu + cfg (vc - vu) on every channel.
  s.guidance_channels = c.in_channels;
  return s;
}

class Svg final : public PlannedNetwork {
 public:
  Svg(const SvgConfig& c, Backend& be) : PlannedNetwork(svg_spec(c), svg_table(c), be), c_(c) {
    const size_t D = c.hidden_size;
    const Norm ln = adaln_norm_consts(be_, consts_, int(D), kLnEps);
    const ParamTable& t = table_;
    ln1_ = linear(t, "ln1");
    cond_ = conditioning(t, int(D));
    final_.norm = ln;
    final_.ada = linear(t, "final_layer.adaLN_modulation.1");
    final_.linear = linear(t, "final_layer.linear");
    for (int k = 0; k < c.depth; ++k) {
      const std::string p = cat("blocks.", k, ".");
      AdaLNBlock b;
      b.ada = linear(t, p + "adaLN_modulation.1");
      b.norm1 = b.norm2 = ln;
      b.attn = attention(t, p + "attn.", c.num_heads);
      if (c.qk_norm) {
        b.attn.q_norm = norm(t, p + "attn.q_norm", c.head_dim(), kQkNormEps);
        b.attn.k_norm = norm(t, p + "attn.k_norm", c.head_dim(), kQkNormEps);
      }
      b.mlp = mlp_gelu_tanh(t, p + "mlp.");
      blocks_.push_back(b);
    }
  }

  void init_random(uint64_t seed) override {
    // initialize_weights: DiT's rules (xavier for ln1 as for any Linear; the LayerNorm qk-norms
    // keep their default weight 1, bias 0) plus the sin-cos table.
    write_params(init_adaln(table_, seed, [&](const ParamEntry& e, const Philox&, float* p) {
      if (e.name != "pos_embed") return false;
      sincos_2d(p, c_.input_size, c_.hidden_size);
      return true;
    }));
  }

  void forward(const float* x, const float* t, const int32_t* y, const float* context, float* out,
               int B, bool train) override;
  void backward(const float* dout) override;
  double forward_flops() const override { return svg_flops(c_); }

 private:
  void plan(int B, bool train) override;

  SvgConfig c_;
  DeviceBuffer consts_;
  Linear ln1_;
  Conditioning cond_;
  FinalLayer final_;
  std::vector<AdaLNBlock> blocks_;

  // The plan of the last forward.
  float *cols_ = nullptr, *embedded_ = nullptr;
  CondActs cond_acts_;
  FinalActs final_acts_;
  float* img_ = nullptr;        // learn_sigma: the whole head output as a map [B, 2C, S, S]
  std::vector<float*> stream_;  // stream_[k]: the input of block k (stream_[depth]: the output)
  std::vector<AdaLNActs> acts_;
  AdaLNGrads grads_acts_;
  float* dtok_ = nullptr;
};

void Svg::plan(int B, bool train) {
  if (!replan(B, train)) return;
  const size_t D = c_.hidden_size, L = c_.tokens(), M = size_t(B) * L;
  const size_t C = c_.in_channels, Co = c_.head_channels();
  const int depth = c_.depth;
  arena_->plan([&](Arena& a) {
    cols_ = a.act(M * C);
    embedded_ = a.act(M * D);
    // The affine qk-norm's gather scratch, shared by the blocks.
    float* qk_tmp = c_.qk_norm ? a.act(M * 2 * D) : nullptr;
    float* qk_dx = c_.qk_norm && train ? a.act(M * 2 * D) : nullptr;
    plan_conditioning(a, cond_acts_, B, int(D), train);
    stream_.assign(depth + 1, nullptr);
    plan_streams(a, stream_, M * D, train, 0);
    acts_.assign(train ? depth : 1, AdaLNActs{});
    for (auto& A : acts_) plan_block(a, blocks_[0], A, B, int(L), qk_tmp, qk_dx);
    plan_final(a, final_, final_acts_, B, int(L));
    img_ = Co != C ? a.f32(size_t(B) * Co * L) : nullptr;
    if (train) {
      plan_block_grads(a, blocks_[0], grads_acts_, B, int(L));
      dtok_ = a.act(M * Co);
    }
  });
}

void Svg::forward(const float* x, const float* t, const int32_t* y, const float* context,
                  float* out, int B, bool train) {
  const Weights W = begin_forward(y, context, B, train);
  const int D = c_.hidden_size, C = c_.in_channels, S = c_.input_size, L = c_.tokens();
  const int M = B * L, Co = c_.head_channels();

  // x = ln1(x) + pos_embed over the tokens (the map's p = 1 im2col is the official sequence).
  be_.patch_im2col(x, cols_, B, C, S, 1);
  linear_fwd(W, ln1_, cols_, C, embedded_, D, M);
  be_.tokens_fwd(nullptr, embedded_, params_ + table_.at("pos_embed").offset, stream_[0], B, 0, L,
                 D);
  // c = t_embedder(t) + y_embedder(y), t the flow time in [0, 1] as given.
  conditioning_fwd(W, cond_, t, y, cond_acts_, B);
  for (int k = 0; k < c_.depth; ++k)
    block_fwd(W, blocks_[k], stream_[k], cond_acts_.sc, acts_[train ? k : 0], stream_[k + 1], B, L);
  final_fwd(W, final_, stream_[c_.depth], cond_acts_.sc, final_acts_, B, L);
  if (img_) {
    // model_output.chunk(2, dim=2)[0]: the first C channels of every token.
    const long n = long(C) * L;
    be_.unpatchify_fwd(final_acts_.tok, img_, B, 0, Co, S, 1);
    be_.copy_2d(out, n, img_, 2 * n, B, n);
  } else {
    be_.unpatchify_fwd(final_acts_.tok, out, B, 0, Co, S, 1);
  }
}

void Svg::backward(const float* dout) {
  const Weights W = begin_backward();
  const int B = B_, D = c_.hidden_size, C = c_.in_channels, S = c_.input_size, L = c_.tokens();
  const int M = B * L, Co = c_.head_channels();
  const AdaLNGrads& G = grads_acts_;

  // The sigma half is never read, so it gets no gradient.
  if (img_) {
    const long n = long(C) * L;
    be_.fill(img_, 0.f, size_t(B) * 2 * n);
    be_.copy_2d(img_, 2 * n, dout, n, B, n);
    be_.unpatchify_bwd(img_, dtok_, B, 0, Co, S, 1);
  } else {
    be_.unpatchify_bwd(dout, dtok_, B, 0, Co, S, 1);
  }
  final_bwd(W, final_, stream_[c_.depth], cond_acts_.sc, final_acts_, dtok_, G, cond_acts_.dsc, B,
            L);
  grads_ready("final_layer.");  // train.overlap (docs/distributed.md, "Overlap")
  for (int k = c_.depth - 1; k >= 0; --k) {
    block_bwd(W, blocks_[k], acts_[k], cond_acts_.sc, G, cond_acts_.dsc, B, L);
    grads_ready(cat("blocks.", k, "."));
  }
  // pos_embed is frozen (requires_grad=False): only ln1 learns from the tokens' gradient.
  linear_bwd(W, ln1_, cols_, C, G.dX, D, nullptr, 0, M);
  conditioning_bwd(W, cond_, cond_acts_, B);
}

}  // namespace

NetworkFamily svg_family(const std::string& name) {
  return config_family<Svg>(name, parse, svg_spec, svg_table, svg_flops);
}

}  // namespace uvit
