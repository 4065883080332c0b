// DiT's adaLN-Zero pieces, shared by the DiT family (dit.cpp) and MDT (mdt.cpp): the conditioning
// vector c = t_embedder(t) + y_embedder(y) (every adaLN reads silu(c)), the adaLN-Zero block
// (modulated norm -> attention -> gate, modulated norm -> MLP -> gate) and the adaLN final layer.
// Forward and backward mirror each other; backward calls accumulate parameter gradients.
// docs/dit.md has the facts.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/layers.hpp"
#include "uvit/config.hpp"
#include "uvit/error.hpp"
#include "uvit/network.hpp"
#include "uvit/rng.hpp"

namespace uvit::layers {

constexpr int kFreqDim = 256;  // TimestepEmbedder.frequency_embedding_size

// The head of a DiT-family plan(B, train): false when `arena` is already carved for (B, train)
// (planned_B, planned_train); otherwise frees it, makes an empty one and records (B, train).
bool begin_plan(Backend& be, std::unique_ptr<Arena>& arena, int& planned_B, bool& planned_train,
                int B, bool train);
// The residual stream's buffers of n act elements, one per entry of `s`: training keeps every
// one; inference keeps the first `keep` (what the long skips pop) and alternates two buffers for
// the rest.
void plan_streams(Arena& a, std::vector<float*>& s, size_t n, bool train, size_t keep);

// t_embedder.mlp.{0,2} and y_embedder.embedding_table (fp32 [rows, D]).
struct Conditioning {
  Linear t0, t2;
  size_t ytable = kAbsent;
  int D = 0;
};
Conditioning conditioning(const ParamTable& t, int D);
struct CondActs {
  float *temb, *th, *ts, *c, *sc;  // sinusoid, mlp.0 out, silu, c, silu(c)
  float *dsc, *dc, *dth;           // training: d silu(c) (the blocks add into it), scratch
  const int32_t* y = nullptr;
};
void plan_conditioning(Arena& a, CondActs& A, int B, int D, bool train);
void conditioning_fwd(const Weights& W, const Conditioning& c, const float* t, const int32_t* y,
                      CondActs& A, int B);
// From A.dsc back to the embedders' weights.
void conditioning_bwd(const Weights& W, const Conditioning& c, CondActs& A, int B);
// From A.dc (d c itself: DiffiT reads c, not silu(c)) back to the embedders' weights.
void conditioning_bwd_c(const Weights& W, const Conditioning& c, CondActs& A, int B);

// The adaLN-Zero block. adaLN_modulation.1 gives (shift, scale, gate) for the attention then for
// the MLP (6 chunks), or (scale, gate) twice without the shifts (LightningDiT's wo_shift).
struct AdaLNBlock {
  Linear ada;
  Linear ada2;  // FiTv2's AdaLN-LoRA: ada is c -> r, ada2 (adaLN_modulation.2) r -> chunks D
  // FiT's adaln_type "swiglu": the modulation is timm SwiGLU(c) instead of ada(silu(c)); the
  // block's conditioning input is then c itself (used when ada_mlp.fc2.out > 0).
  Mlp ada_mlp;
  Norm norm1, norm2;
  Attention attn;
  Mlp mlp;
  bool wo_shift = false;
  int chunks() const { return wo_shift ? 4 : 6; }
  // The adaLN chunk of a role (0..5: shift, scale, gate of msa, then of mlp); -1 for the shifts
  // that wo_shift drops.
  int chunk_of(int role) const {
    if (!wo_shift) return role;
    return role % 3 == 0 ? -1 : role / 3 * 2 + role % 3 - 1;
  }
};
struct AdaLNActs {
  const float* x = nullptr;  // the block input (kept for the backward)
  // FiTv2: the shared global modulation [B, chunks D] added to the block's own, and the LoRA
  // bottleneck [B, r].
  const float* gmod = nullptr;
  float* lora = nullptr;
  MlpActs ada_mlp;  // the SwiGLU modulation's activations [B, ...]
  float *mod, *h1, *mean1, *rstd1, *m1, *a, *x2, *h2, *mean2, *rstd2, *m2, *o;
  AttentionActs attn;
  MlpActs mlp;
};
// The backward's scratch, shared by every block: dX [M, D] carries d(out) in and d(x) out.
// With AdaLN-LoRA, dgmod sums the blocks' modulation gradients for the global modulation (the
// caller zeroes it) and dlora is the bottleneck's scratch.
struct AdaLNGrads {
  float *dX, *dO, *dM, *dG, *dA, *dQKV, *dmod;
  float *dgmod = nullptr, *dlora = nullptr;
  // SwiGLU modulations: the gradient of their input [B, D] and their fc1 scratch.
  float *dcin = nullptr, *dada = nullptr;
};
// Buffers for M = B * L tokens (the most a pass gives the block). A parameter-free LayerNorm
// qk-norm (FiTv2) uses the [M, 2D] scratch qk_tmp and, in training, qk_dx that the caller shares
// between blocks.
void plan_block(Arena& a, const AdaLNBlock& w, AdaLNActs& A, int B, int L, float* qk_tmp = nullptr,
                float* qk_dx = nullptr);
void plan_block_grads(Arena& a, const AdaLNBlock& w, AdaLNGrads& G, int B, int L);
// out = the block of x [B, L, D] under the conditioning sc = silu(c) [B, D] (c itself with a
// SwiGLU modulation).
void block_fwd(const Weights& W, const AdaLNBlock& w, const float* x, const float* sc, AdaLNActs& A,
               float* out, int B, int L);
// G.dX: d(out) in, d(x) out; dsc += d(sc).
void block_bwd(const Weights& W, const AdaLNBlock& w, const AdaLNActs& A, const float* sc,
               const AdaLNGrads& G, float* dsc, int B, int L);

// final_layer: linear(modulate(norm_final(x), shift, scale)), (shift, scale) = adaLN_modulation.
struct FinalLayer {
  Linear ada, linear;
  Norm norm;
  Mlp ada_mlp;  // FiT's adaln_type "swiglu" (then sc is c itself)
};
struct FinalActs {
  float *mod, *h, *mean, *rstd, *m, *tok;
  MlpActs ada_mlp;
};
void plan_final(Arena& a, const FinalLayer& f, FinalActs& A, int B, int L);
void final_fwd(const Weights& W, const FinalLayer& f, const float* x, const float* sc, FinalActs& A,
               int B, int L);
// From dtok [B L, p p C] to dX [B L, D] (overwritten) and dsc (overwritten); G's dM and dmod
// (and dada with a SwiGLU modulation) are scratch.
void final_bwd(const Weights& W, const FinalLayer& f, const float* x, const float* sc,
               const FinalActs& A, const float* dtok, const AdaLNGrads& G, float* dsc, int B,
               int L);

// DiT.initialize_weights over a table, one Philox(seed, k) stream for the k-th tensor: `special`
// writes a family's own tensors first (true when it did); the rest get the shared rules: every
// adaLN_modulation and final_layer.linear zero, the label table and the timestep MLP weights
// N(0, 0.02), norm weights one, other matrices xavier_uniform over [out, in] (the patch conv as
// [D, C p p]), vectors zero; an AdaLN-LoRA down projection (adaLN_modulation.1 followed by an
// adaLN_modulation.2) is xavier, only the modulation's last linear is zero; so are a SwiGLU
// modulation's fc1_g and fc1_x weights (FiT's adaln_type "swiglu" zeroes only its fc2).
// The checks of DiT's constructor arguments (DiT's family and MDT): ranges, patch and head
// divisibility, a multiple of 4 for the 2-D sin-cos position, a finite MLP ratio giving 1 to 2^24
// features (int(hidden_size * mlp_ratio)), a dropout probability; one-line errors naming the field.
// sincos_pos: the network has DiT's 2-D sin-cos position (FiTv2 has none).
void check_dit_args(int input_size, int patch_size, int in_channels, int hidden_size, int depth,
                    int num_heads, int num_classes, double mlp_ratio, double class_dropout_prob,
                    bool sincos_pos = true);

// Reads `k` into c when it is one of DiT's constructor arguments that every adaLN family with
// DiT's config names shares (input_size .. learn_sigma); false for any other key.
template <class Cfg>
bool read_dit_arg(Cfg& c, const std::string& k, const nlohmann::json& v, const std::string& f) {
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
  else
    return false;
  return true;
}

// The nnet section of a family with DiT's arguments: an object whose "name" is `name`; DiT's
// shared arguments are read into c, every other key goes to own(k, v, f) (f = "nnet.k"), which
// reads it or fails; then check_dit_args.
template <class Cfg, class Own>
Cfg parse_dit_nnet(const nlohmann::json& j, const char* name, Own own) {
  UVIT_CHECK(j.is_object(), "nnet: expected an object, got ", j.dump());
  Cfg c;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const nlohmann::json& v = it.value();
    const std::string f = "nnet." + k;
    if (k == "name")
      UVIT_CHECK(json_string(v, f) == name, f, ": \"", v.template get<std::string>(),
                 "\" is not \"", name, "\"");
    else if (!read_dit_arg(c, k, v, f))
      own(c, k, v, f);
  }
  check_dit_args(c.input_size, c.patch_size, c.in_channels, c.hidden_size, c.depth, c.num_heads,
                 c.num_classes, c.mlp_ratio, c.class_dropout_prob);
  return c;
}

// The same arguments as a full config's "nnet" entries, under `name` (a family adds its own).
template <class Cfg>
nlohmann::json dit_args_json(const std::string& name, const Cfg& c) {
  return {{"name", name},
          {"input_size", c.input_size},
          {"patch_size", c.patch_size},
          {"in_channels", c.in_channels},
          {"hidden_size", c.hidden_size},
          {"depth", c.depth},
          {"num_heads", c.num_heads},
          {"mlp_ratio", c.mlp_ratio},
          {"class_dropout_prob", c.class_dropout_prob},
          {"num_classes", c.num_classes},
          {"learn_sigma", c.learn_sigma}};
}

// The constants of DiT's parameter-free LayerNorms, uploaded to `consts` (6 D floats): ones [2D],
// zeros [2D] and a sink [2D] for the weight gradients they do not have; the Norm reads them.
Norm adaln_norm_consts(Backend& be, DeviceBuffer& consts, int D, float eps);

using InitSpecial = std::function<bool(const ParamEntry& e, const Philox& rng, float* p)>;
// DiT's initialize_weights as a Network::write_params fill (tensor i draws from Philox(seed, i));
// `special` handles a family's own tensors first. t must outlive the fill.
Network::ParamFill init_adaln(const ParamTable& t, uint64_t seed, InitSpecial special);

}  // namespace uvit::layers
