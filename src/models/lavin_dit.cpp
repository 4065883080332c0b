// LaVin-DiT (DerrickWang005/LaVin-DiT lib/model/dit.py, blocks.py): an MMDiT-style two-stream
// network. The conditioning frames (in-context example pairs and the query, as latent frames) and
// the answer frame are separate token streams with their own weights; every block runs one joint
// attention over both (GQA, full-width RMSNorm q/k norm, 3-D NeoX RoPE over (frame, row, column)),
// then a per-stream LLaMA SwiGLU, each sublayer tanh-gated, scale-only modulated and sandwiched
// between RMSNorms. docs/lavin_dit.md has the facts this file relies on.
//
// The Network interface carries the conditioning frames as the context [B, T_c, C, S, S] (fp32,
// frame-major: context_tokens = T_c, context_dim = C S S) and the answer frame as x [B, C, S, S].
#include "models/lavin_dit.hpp"

#include <array>
#include <cmath>
#include <memory>
#include <vector>

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

constexpr float kRmsEps = 1e-6f;  // every RMSNorm of blocks.py
constexpr float kLnEps = 1e-5f;   // apex FusedLayerNorm's default (the embedders)
constexpr int kStreams = 2;       // 0: cond (the frames), 1: x (the answer)
const char* const kStream[kStreams] = {"cond", "x"};

// LaVinDiT.__init__'s arguments (official names and defaults) plus the geometry: input_size (the
// latent side) and num_frames (T_c, the conditioning frames; 2N + 1 for N example pairs).
struct LavinConfig {
  int input_size = 32, num_frames = 9, patch_size = 2, in_channels = 16, hidden_size = 1152,
      depth = 28, num_heads = 16, kv_group = 1;

  int head_dim() const { return hidden_size / num_heads; }
  int kv_heads() const { return num_heads / kv_group; }
  int kv_dim() const { return kv_heads() * head_dim(); }
  int grid() const { return input_size / patch_size; }
  int frame_tokens() const { return grid() * grid(); }
  int cond_tokens() const { return num_frames * frame_tokens(); }
  int joint_tokens() const { return cond_tokens() + frame_tokens(); }  // T_x = 1
  int patch_dim() const { return patch_size * patch_size * in_channels; }
  // SwiGLU: int((4 * hidden_size * 2 / 3) / 64) * 64 (6144 for 2304).
  int ffn() const { return int(std::floor(4.0 * hidden_size * 2.0 / 3.0 / 64.0)) * 64; }

  json to_json() const {
    return {{"name", "lavin_dit"},      {"input_size", input_size},   {"num_frames", num_frames},
            {"patch_size", patch_size}, {"in_channels", in_channels}, {"hidden_size", hidden_size},
            {"depth", depth},           {"num_heads", num_heads},     {"kv_group", kv_group}};
  }
};

LavinConfig parse(const json& j) {
  UVIT_CHECK(j.is_object(), "nnet: expected an object, got ", j.dump());
  LavinConfig c;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const std::string f = "nnet." + k;
    if (k == "name") {
      UVIT_CHECK(json_string(it.value(), f) == "lavin_dit", f, " must be \"lavin_dit\"");
      continue;
    }
    int* dst = k == "input_size"    ? &c.input_size
               : k == "num_frames"  ? &c.num_frames
               : k == "patch_size"  ? &c.patch_size
               : k == "in_channels" ? &c.in_channels
               : k == "hidden_size" ? &c.hidden_size
               : k == "depth"       ? &c.depth
               : k == "num_heads"   ? &c.num_heads
               : k == "kv_group"    ? &c.kv_group
                                    : nullptr;
    UVIT_CHECK(dst, "nnet: unknown field \"", k, "\" for lavin_dit");
    *dst = json_int(it.value(), f);
  }
  check_net_range("input_size", c.input_size, 1, 4096);
  check_net_range("num_frames", c.num_frames, 1, 1024);
  check_net_range("patch_size", c.patch_size, 1, c.input_size);
  check_net_range("in_channels", c.in_channels, 1, 4096);
  check_net_range("hidden_size", c.hidden_size, 1, 1 << 16);
  check_net_range("depth", c.depth, 1, 1024);
  check_net_range("num_heads", c.num_heads, 1, c.hidden_size);
  check_net_range("kv_group", c.kv_group, 1, c.num_heads);
  UVIT_CHECK(c.input_size % c.patch_size == 0, "nnet.input_size ", c.input_size,
             " is not a multiple of patch_size ", c.patch_size);
  UVIT_CHECK(c.hidden_size % c.num_heads == 0, "nnet.hidden_size ", c.hidden_size,
             " is not a multiple of num_heads ", c.num_heads);
  UVIT_CHECK(c.num_heads % c.kv_group == 0, "nnet.num_heads ", c.num_heads,
             " is not a multiple of kv_group ", c.kv_group);
  UVIT_CHECK(
      c.head_dim() % 6 == 0, "nnet: head_dim ", c.head_dim(),
      " (hidden_size / num_heads) must split into three even RoPE sections (a multiple of 6)");
  UVIT_CHECK(c.ffn() > 0, "nnet.hidden_size ", c.hidden_size, " gives no SwiGLU features");
  return c;
}

// The official state_dict order: the module's own parameters first, then the submodules.
ParamTable lavin_table(const LavinConfig& c) {
  const int64_t D = c.hidden_size, P = c.patch_dim(), K = c.kv_dim(), F = c.ffn();
  ParamTable t;
  t.add("prompt_embed", {1, D});
  t.add("answer_embed", {1, D});
  for (const char* e : {"cond_embedder", "x_embedder"}) {
    t.add(cat(e, ".0.weight"), {D, P});
    t.add(cat(e, ".0.bias"), {D});
    t.add(cat(e, ".1.weight"), {D});
    t.add(cat(e, ".1.bias"), {D});
  }
  t.add("t_embedder.mlp.0.weight", {D, kFreqDim});
  t.add("t_embedder.mlp.0.bias", {D});
  t.add("t_embedder.mlp.2.weight", {D, D});
  t.add("t_embedder.mlp.2.bias", {D});
  for (int i = 0; i < c.depth; ++i) {
    const std::string b = cat("blocks.", i, ".");
    for (const char* s : kStream) {
      const std::string a = cat(b, "joint_attn.", s, "_");
      t.add(a + "q.weight", {D, D});
      t.add(a + "k.weight", {K, D});
      t.add(a + "v.weight", {K, D});
      t.add(a + "qnorm.weight", {D});
      t.add(a + "knorm.weight", {K});
      t.add(a + "proj.weight", {D, D});
    }
    for (const char* s : kStream) {
      const std::string m = cat(b, s, "_mlp.");
      t.add(m + "gate_proj.weight", {F, D});
      t.add(m + "down_proj.weight", {D, F});
      t.add(m + "up_proj.weight", {F, D});
    }
    for (const char* s : kStream) {
      t.add(cat(b, s, "_modulation.1.weight"), {4 * D, D});
      t.add(cat(b, s, "_modulation.1.bias"), {4 * D});
    }
  }
  t.add("final_layer.linear.weight", {P, D});
  t.add("final_layer.linear.bias", {P});
  t.add("final_layer.adaLN_modulation.1.weight", {D, D});
  t.add("final_layer.adaLN_modulation.1.bias", {D});
  return t;
}

double lavin_flops(const LavinConfig& c) {
  const double D = c.hidden_size, K = c.kv_dim(), F = c.ffn(), P = c.patch_dim();
  const double Lc = c.cond_tokens(), Lx = c.frame_tokens(), N = Lc + Lx;
  const double per_token = 2 * (2 * D * D + 2 * D * K + 3 * D * F);
  const double mod = 2 * kStreams * D * 4 * D;
  const double blocks = c.depth * (N * per_token + mod + 4 * N * N * D);
  const double temb = 2 * (kFreqDim * D + D * D), final = 2 * (D * D + Lx * D * P);
  return blocks + 2 * N * P * D + temb + final;
}

NetSpec lavin_spec(const LavinConfig& c) {
  NetSpec s;
  s.name = "lavin_dit";
  s.in_chans = s.out_chans = c.in_channels;
  s.img_size = c.input_size;
  s.context_tokens = c.num_frames;
  s.context_dim = c.in_channels * c.input_size * c.input_size;
  return s;
}

// The 3-D RoPE tables [T H W, Dh] (RotaryEmbedding3D.compute_freqs, float32): section s of Dh/3
// features rotates by coordinate s of the token (frame, row, column; frame-major order over the
// joint sequence), NeoX-style: cos(c f_k) at k and k + sec/2, f_k = 10000^(-2k/sec).
// Row n depends only on n, so the table of fewer frames is a prefix of this one.
void rope_3d(const LavinConfig& c, int frames, std::vector<float>& cosv, std::vector<float>& sinv) {
  const int Dh = c.head_dim(), sec = Dh / 3, half = sec / 2, g = c.grid();
  const int N = (frames + 1) * c.frame_tokens();
  cosv.assign(size_t(N) * Dh, 0.f);
  sinv.assign(size_t(N) * Dh, 0.f);
  for (int n = 0; n < N; ++n) {
    const int coord[3] = {n / (g * g), n / g % g, n % g};
    for (int s = 0; s < 3; ++s)
      for (int k = 0; k < half; ++k) {
        const float inv = float(1.0 / std::pow(10000.0, double(2 * k) / sec));
        const float a = float(coord[s]) * inv;
        for (int o : {0, half}) {
          cosv[size_t(n) * Dh + s * sec + k + o] = std::cos(a);
          sinv[size_t(n) * Dh + s * sec + k + o] = std::sin(a);
        }
      }
  }
}

// One stream's weights in a block.
struct StreamW {
  Linear q, k, v, proj, mod;
  Norm qnorm, knorm;
  Mlp mlp;
};
// One stream's activations in a block (M = B L rows).
struct StreamActs {
  const float* x = nullptr;  // the block input
  float *mod, *modt;         // modulation [B, 4D] and its tanh (the gates are chunks 1 and 3)
  float *n1, *rstd1, *h1;    // RMSNorm(x), (1 + scale_msa) n1
  float *qraw, *kraw, *v, *qn, *kn, *qrstd, *krstd;
  float *att, *o, *po, *rstdo, *x2;  // attention rows of this stream, proj, RMSNorm(o), mid stream
  float *n2, *rstd2, *h2, *m, *pm, *rstdm;
  MlpActs mlp;
};
struct BlockActs {
  StreamActs s[kStreams];
  float *qkv, *att, *lse;  // the joint sequence [B N, 3D] (kv heads repeated), [B N, D], [B H N]
};

class LavinDiT final : public PlannedNetwork {
 public:
  LavinDiT(const LavinConfig& c, Backend& be)
      : PlannedNetwork(lavin_spec(c), lavin_table(c), be),
        c_(c),
        consts_(be, size_t(2) * c.hidden_size * 4) {
    const int D = c.hidden_size;
    std::vector<float> h(2 * size_t(D), 0.f);
    std::fill(h.begin(), h.begin() + D, 1.f);
    be_.upload(consts_.f32(), h.data(), h.size() * 4);
    ones_ = consts_.f32();
    sink_ = consts_.f32() + D;
    set_frames(c.num_frames);
    const ParamTable& t = table_;
    for (int s = 0; s < kStreams; ++s) {
      emb_[s] = linear(t, cat(s ? "x" : "cond", "_embedder.0"));
      ln_[s] = norm(t, cat(s ? "x" : "cond", "_embedder.1"), D, kLnEps);
    }
    prompt_ = t.at("prompt_embed").offset;
    answer_ = t.at("answer_embed").offset;
    t0_ = linear(t, "t_embedder.mlp.0");
    t2_ = linear(t, "t_embedder.mlp.2");
    fin_ = linear(t, "final_layer.linear");
    fin_ada_ = linear(t, "final_layer.adaLN_modulation.1");
    blocks_.resize(c.depth);
    for (int k = 0; k < c.depth; ++k)
      for (int s = 0; s < kStreams; ++s) {
        const std::string a = cat("blocks.", k, ".joint_attn.", kStream[s], "_");
        const std::string m = cat("blocks.", k, ".", kStream[s], "_mlp.");
        StreamW& w = blocks_[k][s];
        w.q = linear(t, a + "q");
        w.k = linear(t, a + "k");
        w.v = linear(t, a + "v");
        w.proj = linear(t, a + "proj");
        w.qnorm = rms_norm(t, a + "qnorm", D, kRmsEps);
        w.knorm = rms_norm(t, a + "knorm", c.kv_dim(), kRmsEps);
        // LLaMA SwiGLU: down(silu(gate(h)) * up(h)), the split form of layers::Mlp.
        w.mlp.fc1 = linear(t, m + "gate_proj");
        w.mlp.fc1x = linear(t, m + "up_proj");
        w.mlp.fc2 = linear(t, m + "down_proj");
        w.mlp.gated = true;
        w.mod = linear(t, cat("blocks.", k, ".", kStream[s], "_modulation.1"));
      }
  }

  void forward(const float* x, const float* t, const int32_t* y, const float* context, float* out,
               int B, bool train) override;
  void backward(const float* dout) override;
  void init_random(uint64_t seed) override;
  double forward_flops() const override { return lavin_flops(c_); }

  // The conditioning frames of the next forwards (the unconditional pass has 2). Buffers and the
  // RoPE table are sized for the most frames seen, so switching back and forth allocates nothing.
  void set_frames(int frames) {
    check_net_range("frames", frames, 1, 1024);
    frames_ = frames;
    spec_.context_tokens = frames;
    if (frames <= rope_frames_) return;
    std::vector<float> cs, sn;
    rope_3d(c_, frames, cs, sn);
    rope_ = DeviceBuffer(be_, (cs.size() + sn.size()) * 4);
    be_.upload(rope_.f32(), cs.data(), cs.size() * 4);
    be_.upload(rope_.f32() + cs.size(), sn.data(), sn.size() * 4);
    rope_sin_ = rope_.f32() + cs.size();
    rope_frames_ = frames;
  }

 private:
  int cond_tokens() const { return frames_ * c_.frame_tokens(); }
  int joint_tokens() const { return cond_tokens() + c_.frame_tokens(); }
  int rows(int s) const { return s ? c_.frame_tokens() : cond_tokens(); }  // per sample
  int offset(int s) const { return s ? cond_tokens() : 0; }                // in the joint sequence
  void plan(int B, bool train) override;
  void block_fwd(int k, BlockActs& A, const float* const in[kStreams], float* const out[kStreams]);
  void block_bwd(int k, BlockActs& A);
  // Stream rows [B L_s, cols] (ld_s) <-> their place in the joint [B N, ...] (ld_j): `to_joint`
  // copies the stream in, otherwise out.
  void joint_copy(int s, float* joint, long ld_j, float* strm, long ld_s, long cols, bool to_joint);
  // y = x RMSNorm without affine over D (rstd fp32 [M]).
  void rms_fwd(const float* x, float* y, float* rstd, int M) {
    be_.rmsnorm_fwd(x, ones_, y, rstd, M, 1, c_.hidden_size, c_.hidden_size, kRmsEps);
  }
  void rms_bwd(const float* dy, const float* x, const float* rstd, float* dx, int M, bool acc) {
    be_.rmsnorm_bwd(dy, x, ones_, rstd, dx, sink_, M, 1, c_.hidden_size, c_.hidden_size, acc);
  }

  LavinConfig c_;
  DeviceBuffer consts_, rope_;
  float *ones_, *sink_;
  const float* rope_sin_ = nullptr;
  int frames_ = 0, rope_frames_ = 0;
  Linear emb_[kStreams], t0_, t2_, fin_, fin_ada_;
  Norm ln_[kStreams];
  size_t prompt_ = 0, answer_ = 0;
  std::vector<std::array<StreamW, kStreams>> blocks_;

  // The plan of the last forward (sized for plan_frames_ conditioning frames).
  int plan_frames_ = 0;
  float *tok_[kStreams], *e_[kStreams], *lnm_[kStreams], *lnr_[kStreams];
  float *temb_, *th_, *ts_, *te_, *tc_[kStreams], *st_[kStreams];
  std::vector<float*> stream_[kStreams];  // stream_[s][k]: the input of block k
  std::vector<BlockActs> acts_;
  float *fmod_, *fn_, *frstd_, *fh_, *ftok_;
  // Backward scratch.
  float *dX_[kStreams], *dA_[kStreams], *dB_[kStreams], *dQ_[kStreams], *dK_[kStreams],
      *dV_[kStreams], *dKV_[kStreams], *dG_[kStreams], *dmod_[kStreams], *dst_[kStreams];
  float *dAtt_, *dQKV_, *dte_, *dth_;
  float* dtanh_;  // [B, 4D]: tanh_bwd over whole modulation rows, whose gate chunks are kept
};

void LavinDiT::plan(int B, bool train) {
  if (frames_ > plan_frames_) arena_.reset();  // more frames than planned re-plans too
  if (!replan(B, train)) return;
  plan_frames_ = frames_;
  const size_t D = c_.hidden_size, K = c_.kv_dim(), F = c_.ffn(), P = c_.patch_dim();
  const size_t N = size_t(B) * joint_tokens(), Bd = size_t(B) * D;
  const int depth = c_.depth;
  arena_->plan([&](Arena& a) {
    temb_ = a.act(size_t(B) * kFreqDim);
    th_ = a.act(Bd);
    ts_ = a.act(Bd);
    te_ = a.act(Bd);
    for (int s = 0; s < kStreams; ++s) {
      const size_t M = size_t(B) * rows(s);
      tok_[s] = a.act(M * P);
      e_[s] = a.act(M * D);
      lnm_[s] = a.f32(M);
      lnr_[s] = a.f32(M);
      tc_[s] = a.act(Bd);
      st_[s] = a.act(Bd);
      stream_[s].assign(depth + 1, nullptr);
      plan_streams(a, stream_[s], M * D, train, 0);
    }
    acts_.assign(train ? depth : 1, BlockActs{});
    for (BlockActs& A : acts_) {
      A.qkv = a.act(N * 3 * D);
      A.att = a.act(N * D);
      A.lse = a.f32(N * c_.num_heads);
      for (int s = 0; s < kStreams; ++s) {
        StreamActs& S = A.s[s];
        const size_t M = size_t(B) * rows(s);
        S.mod = a.act(4 * Bd);
        S.modt = a.act(4 * Bd);
        S.n1 = a.act(M * D);
        S.rstd1 = a.f32(M);
        S.h1 = a.act(M * D);
        S.qraw = a.act(M * D);
        S.kraw = a.act(M * K);
        S.v = a.act(M * K);
        S.qn = a.act(M * D);
        S.kn = a.act(M * K);
        S.qrstd = a.f32(M);
        S.krstd = a.f32(M);
        S.att = a.act(M * D);
        S.o = a.act(M * D);
        S.po = a.act(M * D);
        S.rstdo = a.f32(M);
        S.x2 = a.act(M * D);
        S.n2 = a.act(M * D);
        S.rstd2 = a.f32(M);
        S.h2 = a.act(M * D);
        S.mlp.f = a.act(M * 2 * F);
        S.mlp.g = a.act(M * F);
        S.m = a.act(M * D);
        S.pm = a.act(M * D);
        S.rstdm = a.f32(M);
      }
    }
    const size_t Mx = size_t(B) * rows(1);
    fmod_ = a.act(Bd);
    fn_ = a.act(Mx * D);
    frstd_ = a.f32(Mx);
    fh_ = a.act(Mx * D);
    ftok_ = a.act(Mx * P);
    if (train) {
      for (int s = 0; s < kStreams; ++s) {
        const size_t M = size_t(B) * rows(s);
        dX_[s] = a.act(M * D);
        dA_[s] = a.act(M * D);
        dB_[s] = a.act(M * D);
        dQ_[s] = a.act(M * D);
        dK_[s] = a.act(M * K);
        dV_[s] = a.act(M * K);
        dKV_[s] = a.act(M * K);
        dG_[s] = a.act(M * 2 * F);
        dmod_[s] = a.act(4 * Bd);
        dst_[s] = a.act(Bd);
      }
      dAtt_ = a.act(N * D);
      dQKV_ = a.act(N * 3 * D);
      dte_ = a.act(Bd);
      dth_ = a.act(Bd);
      dtanh_ = a.act(4 * Bd);
    }
  });
}

void LavinDiT::joint_copy(int s, float* joint, long ld_j, float* strm, long ld_s, long cols,
                          bool to_joint) {
  // One copy_3d over the batch: sample b's L rows sit at row b * N + offset(s) of the joint.
  const long L = rows(s), N = joint_tokens();
  float* j = be_.act_at(joint, offset(s) * ld_j);
  if (to_joint)
    be_.copy_3d(j, ld_j, N * ld_j, strm, ld_s, L * ld_s, B_, L, cols);
  else
    be_.copy_3d(strm, ld_s, L * ld_s, j, ld_j, N * ld_j, B_, L, cols);
}

void LavinDiT::block_fwd(int k, BlockActs& A, const float* const in[kStreams],
                         float* const out[kStreams]) {
  const Weights W = weights();
  const int B = B_, D = c_.hidden_size, K = c_.kv_dim(), Dh = c_.head_dim(), H = c_.num_heads;
  const int N = joint_tokens();
  for (int s = 0; s < kStreams; ++s) {
    const StreamW& w = blocks_[k][s];
    StreamActs& S = A.s[s];
    const int L = rows(s), M = B * L;
    S.x = in[s];
    // (scale_msa, gate_msa, scale_mlp, gate_mlp) = modulation(t_s); the gates through tanh.
    linear_fwd(W, w.mod, st_[s], D, S.mod, 4 * D, B);
    be_.tanh_fwd(S.mod, S.modt, size_t(B) * 4 * D);
    rms_fwd(S.x, S.n1, S.rstd1, M);
    be_.modulate_fwd(S.n1, nullptr, S.mod, 4 * D, S.h1, B, L, D);
    linear_fwd(W, w.q, S.h1, D, S.qraw, D, M);
    linear_fwd(W, w.k, S.h1, D, S.kraw, K, M);
    linear_fwd(W, w.v, S.h1, D, S.v, K, M);
    be_.rmsnorm_fwd(S.qraw, W.w32 + w.qnorm.w, S.qn, S.qrstd, M, 1, D, D, kRmsEps);
    be_.rmsnorm_fwd(S.kraw, W.w32 + w.knorm.w, S.kn, S.krstd, M, 1, K, K, kRmsEps);
    // The joint q | k | v rows; kv head j serves q heads j g .. j g + g - 1 (g = kv_group).
    joint_copy(s, A.qkv, 3 * D, S.qn, D, D, true);
    for (int h = 0; h < H; ++h) {
      const int j = h / c_.kv_group;
      joint_copy(s, be_.act_at(A.qkv, D + h * Dh), 3 * D, be_.act_at(S.kn, j * Dh), K, Dh, true);
      joint_copy(s, be_.act_at(A.qkv, 2 * D + h * Dh), 3 * D, be_.act_at(S.v, j * Dh), K, Dh, true);
    }
  }
  be_.rope(A.qkv, rope_.f32(), rope_sin_, B, N, 2 * H, Dh, 3 * D, false, Dh / 3);
  be_.attention_fwd(A.qkv, A.att, A.lse, B, N, H, Dh, float(1.0 / std::sqrt(double(Dh))));
  for (int s = 0; s < kStreams; ++s) {
    const StreamW& w = blocks_[k][s];
    StreamActs& S = A.s[s];
    const int L = rows(s), M = B * L;
    joint_copy(s, A.att, D, S.att, D, D, false);
    linear_fwd(W, w.proj, S.att, D, S.o, D, M);
    // x2 = x + tanh(gate_msa) RMSNorm(o) (sandwich post-norm)
    rms_fwd(S.o, S.po, S.rstdo, M);
    be_.gate_fwd(S.x, S.po, be_.act_at(S.modt, D), 4 * D, S.x2, B, L, D);
    rms_fwd(S.x2, S.n2, S.rstd2, M);
    be_.modulate_fwd(S.n2, nullptr, be_.act_at(S.mod, 2 * D), 4 * D, S.h2, B, L, D);
    mlp_fwd(W, w.mlp, S.h2, S.mlp, S.m, nullptr, M);
    rms_fwd(S.m, S.pm, S.rstdm, M);
    be_.gate_fwd(S.x2, S.pm, be_.act_at(S.modt, 3 * D), 4 * D, out[s], B, L, D);
  }
}

void LavinDiT::forward(const float* x, const float* t, const int32_t* y, const float* context,
                       float* out, int B, bool train) {
  const Weights W = begin_forward(y, context, B, train);
  UVIT_CHECK(!y, "lavin_dit takes no class labels");
  const int D = c_.hidden_size, C = c_.in_channels, S = c_.input_size, p = c_.patch_size;
  // Tokens "(pH pW C)" (unpatchify's transpose): the T_c frames as B T_c images, then x.
  be_.unpatchify_bwd(context, tok_[0], B * frames_, 0, C, S, p);
  be_.unpatchify_bwd(x, tok_[1], B, 0, C, S, p);
  for (int s = 0; s < kStreams; ++s) {
    const int M = B * rows(s);
    linear_fwd(W, emb_[s], tok_[s], emb_[s].in, e_[s], D, M);
    norm_fwd(W, ln_[s], e_[s], stream_[s][0], lnm_[s], lnr_[s], M);
  }
  // t_emb (SiT time in [0, 1], unscaled), plus prompt_embed / answer_embed per stream.
  be_.timestep_embedding(t, temb_, B, kFreqDim, kFreqDim);
  linear_fwd(W, t0_, temb_, kFreqDim, th_, D, B);
  be_.silu_fwd(th_, ts_, size_t(B) * D);
  linear_fwd(W, t2_, ts_, D, te_, D, B);
  for (int s = 0; s < kStreams; ++s) {
    be_.copy_act(tc_[s], te_, size_t(B) * D);
    be_.add_bias(tc_[s], W.act(s ? answer_ : prompt_), B, D);
    be_.silu_fwd(tc_[s], st_[s], size_t(B) * D);
  }
  for (int k = 0; k < c_.depth; ++k) {
    const float* in[kStreams] = {stream_[0][k], stream_[1][k]};
    float* const o[kStreams] = {stream_[0][k + 1], stream_[1][k + 1]};
    block_fwd(k, acts_[train ? k : 0], in, o);
  }
  // Final layer (x stream): linear((1 + scale) RMSNorm(x)), scale = adaLN_modulation(t_x).
  const int Mx = B * rows(1);
  linear_fwd(W, fin_ada_, st_[1], D, fmod_, D, B);
  rms_fwd(stream_[1][c_.depth], fn_, frstd_, Mx);
  be_.modulate_fwd(fn_, nullptr, fmod_, D, fh_, B, rows(1), D);
  linear_fwd(W, fin_, fh_, D, ftok_, fin_.out, Mx);
  be_.unpatchify_fwd(ftok_, out, B, 0, C, S, p);
}

void LavinDiT::block_bwd(int k, BlockActs& A) {
  const Weights W = weights();
  const int B = B_, D = c_.hidden_size, K = c_.kv_dim(), Dh = c_.head_dim(), H = c_.num_heads;
  const int N = joint_tokens(), g = c_.kv_group;
  for (int s = 0; s < kStreams; ++s) {
    const StreamW& w = blocks_[k][s];
    StreamActs& S = A.s[s];
    const int L = rows(s), M = B * L;
    float* dmod = dmod_[s];
    // MLP half: out = x2 + tanh(gate_mlp) pm; dX_ carries d(out), then d(x2).
    be_.gate_bwd(dX_[s], S.pm, be_.act_at(S.modt, 3 * D), 4 * D, dA_[s], be_.act_at(dmod, 3 * D), B,
                 L, D);
    rms_bwd(dA_[s], S.m, S.rstdm, dB_[s], M, false);
    mlp_bwd(W, w.mlp, S.h2, S.mlp, dB_[s], dA_[s], dG_[s], M);
    be_.modulate_bwd(dA_[s], S.n2, be_.act_at(S.mod, 2 * D), 4 * D, dA_[s], nullptr,
                     be_.act_at(dmod, 2 * D), B, L, D);
    rms_bwd(dA_[s], S.x2, S.rstd2, dX_[s], M, true);
    // Attention half, up to the joint attention output.
    be_.gate_bwd(dX_[s], S.po, be_.act_at(S.modt, D), 4 * D, dA_[s], be_.act_at(dmod, D), B, L, D);
    rms_bwd(dA_[s], S.o, S.rstdo, dB_[s], M, false);
    linear_bwd(W, w.proj, S.att, D, dB_[s], D, dA_[s], D, M);
    joint_copy(s, dAtt_, D, dA_[s], D, D, true);
  }
  be_.attention_bwd(dAtt_, A.qkv, A.att, A.lse, dQKV_, B, N, H, Dh,
                    float(1.0 / std::sqrt(double(Dh))));
  be_.rope(dQKV_, rope_.f32(), rope_sin_, B, N, 2 * H, Dh, 3 * D, true, Dh / 3);
  for (int s = 0; s < kStreams; ++s) {
    const StreamW& w = blocks_[k][s];
    StreamActs& S = A.s[s];
    const int L = rows(s), M = B * L;
    float* dmod = dmod_[s];
    joint_copy(s, dQKV_, 3 * D, dQ_[s], D, D, false);
    // A kv head's gradient is the sum over the q heads it served.
    for (int r = 0; r < g; ++r) {
      float* dk = r ? dKV_[s] : dK_[s];
      float* dv = r ? dB_[s] : dV_[s];
      for (int j = 0; j < c_.kv_heads(); ++j) {
        const int h = j * g + r;
        joint_copy(s, be_.act_at(dQKV_, D + h * Dh), 3 * D, be_.act_at(dk, j * Dh), K, Dh, false);
        joint_copy(s, be_.act_at(dQKV_, 2 * D + h * Dh), 3 * D, be_.act_at(dv, j * Dh), K, Dh,
                   false);
      }
      if (r) {
        be_.axpy_act(dK_[s], dk, 1.f, size_t(M) * K);
        be_.axpy_act(dV_[s], dv, 1.f, size_t(M) * K);
      }
    }
    be_.rmsnorm_bwd(dQ_[s], S.qraw, W.w32 + w.qnorm.w, S.qrstd, dQ_[s], W.g + w.qnorm.w, M, 1, D, D,
                    false);
    be_.rmsnorm_bwd(dK_[s], S.kraw, W.w32 + w.knorm.w, S.krstd, dK_[s], W.g + w.knorm.w, M, 1, K, K,
                    false);
    linear_bwd(W, w.q, S.h1, D, dQ_[s], D, dA_[s], D, M);
    linear_bwd(W, w.k, S.h1, D, dK_[s], K, dA_[s], D, M, 1.f);
    linear_bwd(W, w.v, S.h1, D, dV_[s], K, dA_[s], D, M, 1.f);
    be_.modulate_bwd(dA_[s], S.n1, S.mod, 4 * D, dA_[s], nullptr, dmod, B, L, D);
    rms_bwd(dA_[s], S.x, S.rstd1, dX_[s], M, true);
    // The gates' tanh, then the modulation linear into d silu(t_s).
    // (tanh_bwd of all four chunks, then the gates, chunks 1 and 3 of each sample: 2B rows of D
    // that are 2D apart.)
    be_.tanh_bwd(dmod, S.mod, dtanh_, size_t(B) * 4 * D);
    be_.copy_act_2d(be_.act_at(dmod, D), 2 * D, be_.act_at(dtanh_, D), 2 * D, 2 * B, D);
    linear_bwd(W, w.mod, st_[s], D, dmod, 4 * D, dst_[s], D, B, 1.f);
  }
}

void LavinDiT::backward(const float* dout) {
  const Weights W = begin_backward();
  const int B = B_, D = c_.hidden_size, C = c_.in_channels, S = c_.input_size, p = c_.patch_size;
  const int Mx = B * rows(1);
  for (int s = 0; s < kStreams; ++s) be_.zero_act(dst_[s], size_t(B) * D);
  be_.zero_act(dX_[0], size_t(B) * rows(0) * D);  // the final layer reads only the x stream
  // Final layer.
  be_.unpatchify_bwd(dout, ftok_, B, 0, C, S, p);
  linear_bwd(W, fin_, fh_, D, ftok_, fin_.out, dA_[1], D, Mx);
  be_.modulate_bwd(dA_[1], fn_, fmod_, D, dA_[1], nullptr, dmod_[1], B, rows(1), D);
  rms_bwd(dA_[1], stream_[1][c_.depth], frstd_, dX_[1], Mx, false);
  linear_bwd(W, fin_ada_, st_[1], D, dmod_[1], D, dst_[1], D, B, 1.f);
  for (int k = c_.depth - 1; k >= 0; --k) block_bwd(k, acts_[k]);
  // Embedders.
  for (int s = 0; s < kStreams; ++s) {
    const int M = B * rows(s);
    be_.zero_act(dA_[s], size_t(M) * D);  // (the LayerNorm backward accumulates)
    norm_bwd(W, ln_[s], dX_[s], e_[s], lnm_[s], lnr_[s], dA_[s], M);
    linear_bwd(W, emb_[s], tok_[s], emb_[s].in, dA_[s], D, nullptr, 0, M);
  }
  // t_s = t_emb + embed_s: each embed gets its stream's sum over the batch, t_emb both.
  for (int s = 0; s < kStreams; ++s) {
    be_.silu_bwd(dst_[s], tc_[s], dst_[s], size_t(B) * D);
    be_.bias_grad(dst_[s], W.g + (s ? answer_ : prompt_), B, D);
  }
  be_.copy_act(dte_, dst_[0], size_t(B) * D);
  be_.axpy_act(dte_, dst_[1], 1.f, size_t(B) * D);
  linear_bwd(W, t2_, ts_, D, dte_, D, dth_, D, B);
  be_.silu_bwd(dth_, th_, dth_, size_t(B) * D);
  linear_bwd(W, t0_, temb_, kFreqDim, dth_, D, nullptr, 0, B);
}

void LavinDiT::init_random(uint64_t seed) {
  // LaVinDiT.initialize_weights: Linear xavier / zero bias, LayerNorm and the q/k RMSNorm weights
  // one, prompt/answer embeds and the timestep MLP N(0, 0.02), the modulations and the final
  // layer zero.
  write_params(init_adaln(table_, seed, [](const ParamEntry& e, const Philox& rng, float* p) {
    const std::string& n = e.name;
    if (n == "prompt_embed" || n == "answer_embed") {
      for (size_t i = 0; i < e.numel; ++i) p[i] = 0.02f * rng.normal(i);
    } else if (n.ends_with("norm.weight") || n.ends_with("_embedder.1.weight")) {
      std::fill(p, p + e.numel, 1.f);
    } else if (n.find("_modulation.1.") != std::string::npos) {
      std::fill(p, p + e.numel, 0.f);
    } else {
      return false;
    }
    return true;
  }));
}

}  // namespace

void lavin_set_frames(Network& net, int frames) {
  auto* m = dynamic_cast<LavinDiT*>(&net);
  UVIT_CHECK(m, "network ", net.spec().name, " has no conditioning frames (lavin_dit only)");
  m->set_frames(frames);
}

NetworkFamily lavin_dit_family() {
  return config_family<LavinDiT>("lavin_dit", parse, lavin_spec, lavin_table, lavin_flops);
}

}  // namespace uvit
