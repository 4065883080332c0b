#include "models/adaln.hpp"

#include <algorithm>
#include <cmath>

#include "uvit/config.hpp"
#include "uvit/error.hpp"

namespace uvit::layers {

Conditioning conditioning(const ParamTable& t, int D) {
  Conditioning c;
  c.t0 = linear(t, "t_embedder.mlp.0");
  c.t2 = linear(t, "t_embedder.mlp.2");
  c.ytable = t.at("y_embedder.embedding_table.weight").offset;
  c.D = D;
  return c;
}

Norm adaln_norm_consts(Backend& be, DeviceBuffer& consts, int D, float eps) {
  consts = DeviceBuffer(be, size_t(6) * D * 4);
  std::vector<float> h(6 * size_t(D), 0.f);
  std::fill(h.begin(), h.begin() + 2 * D, 1.f);
  be.upload(consts.f32(), h.data(), h.size() * 4);
  const float* one = consts.f32();
  return norm_no_affine(D, eps, one, one + 2 * D, consts.f32() + 4 * D);
}

bool begin_plan(Backend& be, std::unique_ptr<Arena>& arena, int& planned_B, bool& planned_train,
                int B, bool train) {
  if (arena && planned_B == B && planned_train == train) return false;
  arena.reset();
  arena = std::make_unique<Arena>(be);
  planned_B = B;
  planned_train = train;
  return true;
}

void plan_streams(Arena& a, std::vector<float*>& s, size_t n, bool train, size_t keep) {
  if (train) {
    for (auto& b : s) b = a.act(n);
    return;
  }
  for (size_t k = 0; k < keep && k < s.size(); ++k) s[k] = a.act(n);
  float* p = a.act(n);
  float* q = a.act(n);
  for (size_t k = keep; k < s.size(); ++k) s[k] = (k - keep) % 2 ? q : p;
}

void plan_conditioning(Arena& a, CondActs& A, int B, int D, bool train) {
  const size_t n = size_t(B) * D;
  A.temb = a.act(size_t(B) * kFreqDim);
  A.th = a.act(n);
  A.ts = a.act(n);
  A.c = a.act(n);
  A.sc = a.act(n);
  A.dsc = train ? a.act(n) : nullptr;
  A.dc = train ? a.act(n) : nullptr;
  A.dth = train ? a.act(n) : nullptr;
}

void conditioning_fwd(const Weights& W, const Conditioning& c, const float* t, const int32_t* y,
                      CondActs& A, int B) {
  Backend& be = W.be;
  const int D = c.D;
  A.y = y;
  be.timestep_embedding(t, A.temb, B, kFreqDim, kFreqDim);
  linear_fwd(W, c.t0, A.temb, kFreqDim, A.th, D, B);
  be.silu_fwd(A.th, A.ts, size_t(B) * D);
  linear_fwd(W, c.t2, A.ts, D, A.c, D, B);
  be.embedding_fwd(W.w32 + c.ytable, y, A.sc, B, D, D);
  be.axpy_act(A.c, A.sc, 1.f, size_t(B) * D);
  be.silu_fwd(A.c, A.sc, size_t(B) * D);
}

void conditioning_bwd(const Weights& W, const Conditioning& c, CondActs& A, int B) {
  W.be.silu_bwd(A.dsc, A.c, A.dc, size_t(B) * c.D);
  conditioning_bwd_c(W, c, A, B);
}

void conditioning_bwd_c(const Weights& W, const Conditioning& c, CondActs& A, int B) {
  Backend& be = W.be;
  const int D = c.D;
  if (float* dy = W.grad(c.ytable)) be.embedding_bwd(A.dc, A.y, dy, B, D, D);
  linear_bwd(W, c.t2, A.ts, D, A.dc, D, A.dth, D, B);
  be.silu_bwd(A.dth, A.th, A.dth, size_t(B) * D);
  linear_bwd(W, c.t0, A.temb, kFreqDim, A.dth, D, nullptr, 0, B);
}

void plan_block(Arena& a, const AdaLNBlock& w, AdaLNActs& A, int B, int L, float* qk_tmp,
                float* qk_dx) {
  const int D = w.attn.heads * w.attn.head_dim, nh = w.attn.heads;
  const size_t M = size_t(B) * L;
  A.mod = a.act(size_t(B) * w.chunks() * D);
  if (w.ada2.out) A.lora = a.act(size_t(B) * w.ada.out);
  if (w.ada_mlp.fc2.out) {
    A.ada_mlp.f = a.act(size_t(B) * 2 * w.ada_mlp.fc2.in);
    A.ada_mlp.g = a.act(size_t(B) * w.ada_mlp.fc2.in);
  }
  A.h1 = a.act(M * D);
  A.mean1 = a.f32(M);
  A.rstd1 = a.f32(M);
  A.m1 = a.act(M * D);
  A.attn.qkv = a.act(M * 3 * D);
  A.attn.att = a.act(M * D);
  A.attn.lse = a.f32(size_t(B) * nh * L);
  if (w.attn.qk_norm() && w.attn.qk_rms_pair()) {  // LightningDiT's (or FiT's) RMSNorm pair
    A.attn.qkv_raw = a.act(M * 3 * D);
    A.attn.qk_rstd = a.f32(M * 2 * nh);
  } else if (w.attn.qk_gathered()) {  // FiT's LayerNorms / mixed, or SVG's affine LayerNorms
    A.attn.qkv_raw = a.act(M * 2 * D);
    A.attn.qk_mean = a.f32(M * 2 * nh);
    A.attn.qk_rstd = a.f32(M * 2 * nh);
    A.attn.qk_tmp = qk_tmp;
    A.attn.qk_dx = qk_dx;
  }
  A.a = a.act(M * D);
  A.x2 = a.act(M * D);
  A.h2 = a.act(M * D);
  A.mean2 = a.f32(M);
  A.rstd2 = a.f32(M);
  A.m2 = a.act(M * D);
  A.mlp.f = a.act(M * (w.mlp.fc1.out + w.mlp.fc1x.out));
  A.mlp.g = a.act(M * w.mlp.fc2.in);
  A.o = a.act(M * D);
}

void plan_block_grads(Arena& a, const AdaLNBlock& w, AdaLNGrads& G, int B, int L) {
  const int D = w.attn.heads * w.attn.head_dim;
  const size_t M = size_t(B) * L;
  G.dX = a.act(M * D);
  G.dO = a.act(M * D);
  G.dM = a.act(M * D);
  G.dG = a.act(M * (w.mlp.fc1.out + w.mlp.fc1x.out));
  G.dA = a.act(M * D);
  G.dQKV = a.act(M * 3 * D);
  G.dmod = a.act(size_t(B) * w.chunks() * D);
  G.dgmod = w.ada2.out ? a.act(size_t(B) * w.chunks() * D) : nullptr;
  G.dlora = w.ada2.out ? a.act(size_t(B) * w.ada.out) : nullptr;
  if (w.ada_mlp.fc2.out) {
    G.dcin = a.act(size_t(B) * D);
    // The block's and the final layer's (hidden D // 2) fc1 gradients.
    G.dada = a.act(size_t(B) * 2 * std::max(w.ada_mlp.fc2.in, D / 2));
  }
}

void block_fwd(const Weights& W, const AdaLNBlock& w, const float* x, const float* sc, AdaLNActs& A,
               float* out, int B, int L) {
  Backend& be = W.be;
  const int D = w.attn.heads * w.attn.head_dim, Dm = w.chunks() * D, M = B * L;
  auto chunk = [&](int role) {
    const int i = w.chunk_of(role);
    return i < 0 ? nullptr : be.act_at(A.mod, size_t(i) * D);
  };
  A.x = x;
  if (w.ada_mlp.fc2.out) {
    mlp_fwd(W, w.ada_mlp, sc, A.ada_mlp, A.mod, nullptr, B);
  } else if (w.ada2.out) {
    // FiTv2: adaLN_modulation(c) + global_adaLN_modulation(c), the sum as the GEMM's residual.
    linear_fwd(W, w.ada, sc, D, A.lora, w.ada.out, B);
    linear_fwd(W, w.ada2, A.lora, w.ada.out, A.mod, Dm, B, A.gmod);
  } else {
    linear_fwd(W, w.ada, sc, D, A.mod, Dm, B);
  }
  // x2 = x + gate_msa * attn(modulate(norm1(x), shift_msa, scale_msa))
  norm_fwd(W, w.norm1, x, A.h1, A.mean1, A.rstd1, M);
  be.modulate_fwd(A.h1, chunk(0), chunk(1), Dm, A.m1, B, L, D);
  attention_fwd(W, w.attn, A.m1, A.attn, A.a, nullptr, B, L);
  be.gate_fwd(x, A.a, chunk(2), Dm, A.x2, B, L, D);
  // out = x2 + gate_mlp * mlp(modulate(norm2(x2), shift_mlp, scale_mlp))
  norm_fwd(W, w.norm2, A.x2, A.h2, A.mean2, A.rstd2, M);
  be.modulate_fwd(A.h2, chunk(3), chunk(4), Dm, A.m2, B, L, D);
  mlp_fwd(W, w.mlp, A.m2, A.mlp, A.o, nullptr, M);
  be.gate_fwd(A.x2, A.o, chunk(5), Dm, out, B, L, D);
}

void block_bwd(const Weights& W, const AdaLNBlock& w, const AdaLNActs& A, const float* sc,
               const AdaLNGrads& G, float* dsc, int B, int L) {
  Backend& be = W.be;
  const int D = w.attn.heads * w.attn.head_dim, Dm = w.chunks() * D, M = B * L;
  auto chunk = [&](int role) {
    const int i = w.chunk_of(role);
    return i < 0 ? nullptr : be.act_at(A.mod, size_t(i) * D);
  };
  auto dchunk = [&](int role) {
    const int i = w.chunk_of(role);
    return i < 0 ? nullptr : be.act_at(G.dmod, size_t(i) * D);
  };
  // G.dX: d(block output) in, d(block input) out (the residual paths add into it).
  be.gate_bwd(G.dX, A.o, chunk(5), Dm, G.dO, dchunk(5), B, L, D);
  mlp_bwd(W, w.mlp, A.m2, A.mlp, G.dO, G.dM, G.dG, M);
  be.modulate_bwd(G.dM, A.h2, chunk(4), Dm, G.dM, dchunk(3), dchunk(4), B, L, D);
  norm_bwd(W, w.norm2, G.dM, A.x2, A.mean2, A.rstd2, G.dX, M);
  be.gate_bwd(G.dX, A.a, chunk(2), Dm, G.dO, dchunk(2), B, L, D);
  attention_bwd(W, w.attn, A.m1, A.attn, G.dO, G.dM, G.dA, G.dQKV, B, L);
  be.modulate_bwd(G.dM, A.h1, chunk(1), Dm, G.dM, dchunk(0), dchunk(1), B, L, D);
  norm_bwd(W, w.norm1, G.dM, A.x, A.mean1, A.rstd1, G.dX, M);
  if (w.ada_mlp.fc2.out) {
    mlp_bwd(W, w.ada_mlp, sc, A.ada_mlp, G.dmod, G.dcin, G.dada, B);
    be.axpy_act(dsc, G.dcin, 1.f, size_t(B) * D);
  } else if (w.ada2.out) {
    be.axpy_act(G.dgmod, G.dmod, 1.f, size_t(B) * Dm);  // the global modulation's share
    linear_bwd(W, w.ada2, A.lora, w.ada.out, G.dmod, Dm, G.dlora, w.ada.out, B);
    linear_bwd(W, w.ada, sc, D, G.dlora, w.ada.out, dsc, D, B, 1.f);
  } else {
    linear_bwd(W, w.ada, sc, D, G.dmod, Dm, dsc, D, B, 1.f);
  }
}

void plan_final(Arena& a, const FinalLayer& f, FinalActs& A, int B, int L) {
  const size_t M = size_t(B) * L, D = f.linear.in;
  A.mod = a.act(size_t(B) * 2 * D);
  A.h = a.act(M * D);
  A.mean = a.f32(M);
  A.rstd = a.f32(M);
  A.m = a.act(M * D);
  A.tok = a.act(M * f.linear.out);
  if (f.ada_mlp.fc2.out) {
    A.ada_mlp.f = a.act(size_t(B) * 2 * f.ada_mlp.fc2.in);
    A.ada_mlp.g = a.act(size_t(B) * f.ada_mlp.fc2.in);
  }
}

void final_fwd(const Weights& W, const FinalLayer& f, const float* x, const float* sc, FinalActs& A,
               int B, int L) {
  Backend& be = W.be;
  const int D = f.linear.in, M = B * L;
  if (f.ada_mlp.fc2.out)
    mlp_fwd(W, f.ada_mlp, sc, A.ada_mlp, A.mod, nullptr, B);
  else
    linear_fwd(W, f.ada, sc, D, A.mod, 2 * D, B);
  norm_fwd(W, f.norm, x, A.h, A.mean, A.rstd, M);
  be.modulate_fwd(A.h, A.mod, be.act_at(A.mod, D), 2 * D, A.m, B, L, D);
  linear_fwd(W, f.linear, A.m, D, A.tok, f.linear.out, M);
}

void final_bwd(const Weights& W, const FinalLayer& f, const float* x, const float* sc,
               const FinalActs& A, const float* dtok, const AdaLNGrads& G, float* dsc, int B,
               int L) {
  Backend& be = W.be;
  const int D = f.linear.in, M = B * L;
  linear_bwd(W, f.linear, A.m, D, dtok, f.linear.out, G.dM, D, M);
  be.modulate_bwd(G.dM, A.h, be.act_at(A.mod, D), 2 * D, G.dM, G.dmod, be.act_at(G.dmod, D), B, L,
                  D);
  if (f.ada_mlp.fc2.out) {
    mlp_bwd(W, f.ada_mlp, sc, A.ada_mlp, G.dmod, dsc, G.dada, B);
  } else {
    be.zero_act(dsc, size_t(B) * D);
    linear_bwd(W, f.ada, sc, D, G.dmod, 2 * D, dsc, D, B, 1.f);
  }
  be.zero_act(G.dX, size_t(M) * D);
  norm_bwd(W, f.norm, G.dM, x, A.mean, A.rstd, G.dX, M);
}

void check_dit_args(int input_size, int patch_size, int in_channels, int hidden_size, int depth,
                    int num_heads, int num_classes, double mlp_ratio, double class_dropout_prob,
                    bool sincos_pos) {
  check_net_range("input_size", input_size, 1, 4096);
  check_net_range("patch_size", patch_size, 1, 4096);
  check_net_range("in_channels", in_channels, 1, 4096);
  check_net_range("hidden_size", hidden_size, 1, 65536);
  check_net_range("depth", depth, 1, 1024);
  check_net_range("num_heads", num_heads, 1, 65536);
  check_net_range("num_classes", num_classes, 1, 1 << 20);
  UVIT_CHECK(input_size % patch_size == 0, "nnet.input_size ", input_size,
             " is not divisible by nnet.patch_size ", patch_size);
  UVIT_CHECK(hidden_size % num_heads == 0, "nnet.hidden_size ", hidden_size,
             " is not divisible by nnet.num_heads ", num_heads);
  // The 2-D sin-cos position splits D into four sin/cos quarters (get_2d_sincos_pos_embed).
  UVIT_CHECK(!sincos_pos || hidden_size % 4 == 0, "nnet.hidden_size ", hidden_size,
             " must be a multiple of 4 (the 2-D sin-cos position embedding)");
  // Finite and bounded before the int conversion of hidden_size * mlp_ratio.
  UVIT_CHECK(std::isfinite(mlp_ratio) && mlp_ratio > 0 &&
                 hidden_size * mlp_ratio <= double(1 << 24) && int(hidden_size * mlp_ratio) >= 1,
             "nnet.mlp_ratio must be positive and give an MLP of 1 to 2^24 features, got ",
             mlp_ratio);
  UVIT_CHECK(
      std::isfinite(class_dropout_prob) && class_dropout_prob >= 0 && class_dropout_prob <= 1,
      "nnet.class_dropout_prob must be in [0, 1], got ", class_dropout_prob);
}

Network::ParamFill init_adaln(const ParamTable& t, uint64_t seed, InitSpecial special) {
  return [&t, seed, special = std::move(special)](size_t i, const ParamEntry& e, float* p) {
    const Philox rng(seed, i);
    const std::string& n = e.name;
    const size_t fan_out = e.shape[0], fan_in = e.shape.size() > 1 ? e.numel / fan_out : 0;
    if (special && special(e, rng, p)) return;
    if (n.ends_with("norm1.weight") || n.ends_with("norm2.weight") || n.ends_with("_norm.weight") ||
        n.ends_with("norm_final.weight")) {
      std::fill(p, p + e.numel, 1.f);  // RMSNorm weights (LightningDiT)
    } else if (n == "y_embedder.embedding_table.weight" ||
               (n.starts_with("t_embedder.mlp.") && n.ends_with(".weight"))) {
      for (size_t k = 0; k < e.numel; ++k) p[k] = 0.02f * rng.normal(k);
    } else if ((n.find("adaLN_modulation") != std::string::npos &&
                !(n.ends_with("adaLN_modulation.1.weight") &&
                  t.find(n.substr(0, n.size() - 8) + "2.weight")) &&
                n.find("adaLN_modulation.fc1_") == std::string::npos) ||
               n.starts_with("final_layer.linear")) {
      // adaLN-Zero: every modulation and the output layer start at zero.
    } else if (e.shape.size() >= 2) {
      // xavier_uniform over [out, in] (the patch conv as a [D, C p p] matrix).
      const double bound = std::sqrt(6.0 / double(fan_in + fan_out));
      for (size_t k = 0; k < e.numel; ++k) p[k] = float((2.0 * rng.uniform(k) - 1.0) * bound);
    }  // biases: 0
  };
}

}  // namespace uvit::layers
