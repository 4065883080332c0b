// MDTv2 (sail-sg/MDT masked_diffusion/models.py `MDTv2`): DiT's adaLN-Zero blocks with a BEiT
// relative position bias in every attention, a learnable position (sin-cos init), an encoder of
// en_inblocks (their outputs pushed) and en_outblocks (each popping one, LIFO, fused by a
// skip_linear on cat[x, skip] before the block), a learnable decoder position, de_blocks whose skip
// is the embedded input, and DiT's final layer. Masked training (mask_ratio set) adds a second pass
// per step: the encoder sees a random subset of the tokens, and a side-interpolater block fills in
// the rest from mask_token. MDTv1 (the repository's mdtv1 branch, `MDT`) is the same with plain
// `blocks` (no long skips): the side-interpolater (or the decoder position) comes before the last
// decode_layer of them, and the mask ratio is fixed. docs/mdt.md has the facts this file relies on.
#include "models/mdt.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "models/adaln.hpp"
#include "models/families.hpp"
#include "models/planned_network.hpp"
#include "models/row_lists.hpp"
#include "uvit/config.hpp"
#include "uvit/error.hpp"
#include "uvit/rng.hpp"

namespace uvit {

using namespace layers;
using nlohmann::json;

namespace {

constexpr float kLnEps = 1e-6f;
// Philox streams of the masked pass's draws (docs/mdt.md): the batch's ratio, the per-sample
// shuffle noise.
constexpr uint64_t kStreamMaskRatio = (uint64_t(9) << 40) + 1;
constexpr uint64_t kStreamMaskNoise = (uint64_t(9) << 40) + 2;
constexpr float kMaskSpread = 0.2f;  // r = mask_ratio + 0.2 U(0, 1)

// The constructor arguments, official names and defaults (MDTv2.__init__; MDT.__init__ of the
// mdtv1 branch for "mdtv1", whose decode_layer has no usable default).
struct MDTConfig {
  std::string name = "mdt";  // or "mdtv1"
  int input_size = 32, patch_size = 2, in_channels = 4, hidden_size = 1152, depth = 28,
      num_heads = 16, num_classes = 1000, decode_layer = 4;
  double mlp_ratio = 4.0, class_dropout_prob = 0.1;
  bool learn_sigma = true;
  bool masked = false;  // mask_ratio given (null: no masked training, mask_token frozen)
  double mask_ratio = 0;

  bool v1() const { return name == "mdtv1"; }
  int out_channels() const { return learn_sigma ? 2 * in_channels : in_channels; }
  int grid() const { return input_size / patch_size; }
  int tokens() const { return grid() * grid(); }
  int head_dim() const { return hidden_size / num_heads; }
  int mlp_hidden() const { return int(hidden_size * mlp_ratio); }
  // MDTv2: en_inblocks = en_outblocks = half; MDTv1: none, its encoder is the first
  // depth - decode_layer of its blocks.
  int half() const { return v1() ? 0 : (depth - decode_layer) / 2; }
  int enc() const { return v1() ? depth - decode_layer : 2 * half(); }  // the encoder's blocks
  int main_blocks() const { return enc() + decode_layer; }
  // The masked pass's ratio r = mask_ratio + spread U(0, 1) (MDTv1: mask_ratio as it is).
  float spread() const { return v1() ? 0.f : kMaskSpread; }
  int label_rows() const { return num_classes + (class_dropout_prob > 0 ? 1 : 0); }
  // RelativePositionBias: (2g-1)^2 offsets plus 3 rows (BEiT's cls-token rows, never indexed).
  int rel_rows() const { return (2 * grid() - 1) * (2 * grid() - 1) + 3; }
  // The fewest tokens a masked pass keeps: len_keep at r -> mask_ratio + 0.2 (MDTv1: its fixed
  // len_keep = int(L (1 - mask_ratio)), Python floats).
  int min_keep() const {
    if (v1()) return int(double(tokens()) * (1.0 - mask_ratio));
    return int(float(tokens()) * (1.f - (float(mask_ratio) + kMaskSpread)));
  }

  // The integer and real arguments by name (parse and to_json walk the same lists).
  std::vector<std::pair<const char*, int*>> int_args() {
    return {{"input_size", &input_size},
            {"patch_size", &patch_size},
            {"in_channels", &in_channels},
            {"hidden_size", &hidden_size},
            {"depth", &depth},
            {"num_heads", &num_heads},
            {"num_classes", &num_classes},
            {"decode_layer", &decode_layer}};
  }
  std::vector<std::pair<const char*, double*>> real_args() {
    return {{"mlp_ratio", &mlp_ratio}, {"class_dropout_prob", &class_dropout_prob}};
  }

  json to_json() const {
    MDTConfig c = *this;
    json j = {{"name", name},
              {"learn_sigma", learn_sigma},
              {"mask_ratio", masked ? json(mask_ratio) : json(nullptr)}};
    for (auto& [name, v] : c.int_args()) j[name] = *v;
    for (auto& [name, v] : c.real_args()) j[name] = *v;
    return j;
  }
};

MDTConfig parse(const json& j, const std::string& family) {
  UVIT_CHECK(j.is_object(), "nnet: expected an object, got ", j.dump());
  MDTConfig c;
  c.name = family;
  bool decode_given = false;
  const auto ints = c.int_args();
  const auto reals = c.real_args();
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const json& v = it.value();
    const std::string f = "nnet." + k;
    bool known = k == "name";
    if (known)
      UVIT_CHECK(json_string(v, f) == family, f, " ", v.dump(), " is not \"", family, "\"");
    if (c.v1() && k == "decode_layer" && v.is_null()) continue;  // None: as if absent
    decode_given |= k == "decode_layer";
    for (auto& [name, dst] : ints)
      if (k == name) *dst = json_int(v, f), known = true;
    for (auto& [name, dst] : reals)
      if (k == name) *dst = json_number(v, f), known = true;
    if (k == "learn_sigma") c.learn_sigma = json_bool(v, f), known = true;
    if (k == "mask_ratio") {
      c.masked = !v.is_null();
      if (c.masked) c.mask_ratio = json_number(v, f);
      known = true;
    }
    UVIT_CHECK(known, f, ": unknown key (not an argument of ", c.v1() ? "MDT" : "MDTv2", ")");
  }
  // MDTv1: int(decode_layer) of its None default fails; the block before which the decoder starts
  // must exist (decode_layer 0 would leave a masked pass's tokens unrestored).
  UVIT_CHECK(!c.v1() || decode_given, "nnet.decode_layer is required for mdtv1 (the official ",
             "default None fails int(decode_layer)); the released MDT-XL/2 uses 2");
  check_dit_args(c.input_size, c.patch_size, c.in_channels, c.hidden_size, c.depth, c.num_heads,
                 c.num_classes, c.mlp_ratio, c.class_dropout_prob);
  check_net_range("decode_layer", c.decode_layer, c.v1() ? 1 : 0, c.depth);
  // The relative index is an int64 buffer of L^2 entries, read here as int32 and fp32.
  UVIT_CHECK(c.tokens() <= 4096, "nnet: ", c.tokens(),
             " tokens exceed the relative position bias's limit of 4096");
  UVIT_CHECK(!c.masked || (std::isfinite(c.mask_ratio) && c.mask_ratio >= 0 && c.min_keep() >= 1),
             "nnet.mask_ratio must be >= 0 and keep a token at mask_ratio + 0.2 (", c.tokens(),
             " tokens), got ", c.mask_ratio);
  return c;
}

// The block names in state_dict order: en_inblocks, en_outblocks, de_blocks (MDTv1: blocks), then
// sideblocks.0.
std::string block_name(const MDTConfig& c, int k) {
  if (c.v1()) return k < c.depth ? cat("blocks.", k) : std::string("sideblocks.0");
  const int h = c.half();
  if (k < h) return cat("en_inblocks.", k);
  if (k < 2 * h) return cat("en_outblocks.", k - h);
  if (k < c.main_blocks()) return cat("de_blocks.", k - 2 * h);
  return "sideblocks.0";
}
bool has_skip(const MDTConfig& c, int k) { return !c.v1() && k >= c.half() && k < c.main_blocks(); }

// The official state_dict: MDTv2's own parameters (pos_embed, decoder_pos_embed, mask_token) first,
// then the submodules in registration order; in a block attn (qkv, proj, rel_pos_bias: its table,
// then the int64 index buffer), mlp, adaLN_modulation, skip_linear.
ParamTable mdt_table(const MDTConfig& c) {
  const int64_t D = c.hidden_size, p = c.patch_size, L = c.tokens();
  ParamTable t;
  t.add("pos_embed", {1, L, D});
  t.add("decoder_pos_embed", {1, L, D});
  t.add("mask_token", {1, 1, D}, /*frozen=*/!c.masked);  // requires_grad=False without mask_ratio
  t.add("x_embedder.proj.weight", {D, c.in_channels, p, p});
  t.add("x_embedder.proj.bias", {D});
  t.add("t_embedder.mlp.0.weight", {D, kFreqDim});
  t.add("t_embedder.mlp.0.bias", {D});
  t.add("t_embedder.mlp.2.weight", {D, D});
  t.add("t_embedder.mlp.2.bias", {D});
  t.add("y_embedder.embedding_table.weight", {c.label_rows(), D});
  const int64_t F = c.mlp_hidden();
  for (int k = 0; k <= c.main_blocks(); ++k) {
    const std::string b = block_name(c, k) + ".";
    t.add(b + "attn.qkv.weight", {3 * D, D});
    t.add(b + "attn.qkv.bias", {3 * D});
    t.add(b + "attn.proj.weight", {D, D});
    t.add(b + "attn.proj.bias", {D});
    t.add(b + "attn.rel_pos_bias.relative_position_bias_table", {c.rel_rows(), c.num_heads});
    t.add(b + "attn.rel_pos_bias.relative_position_index", {L, L}, /*frozen=*/true);
    t.add(b + "mlp.fc1.weight", {F, D});
    t.add(b + "mlp.fc1.bias", {F});
    t.add(b + "mlp.fc2.weight", {D, F});
    t.add(b + "mlp.fc2.bias", {D});
    t.add(b + "adaLN_modulation.1.weight", {6 * D, D});
    t.add(b + "adaLN_modulation.1.bias", {6 * D});
    if (has_skip(c, k)) {
      t.add(b + "skip_linear.weight", {D, 2 * D});
      t.add(b + "skip_linear.bias", {D});
    }
  }
  t.add("final_layer.linear.weight", {p * p * c.out_channels(), D});
  t.add("final_layer.linear.bias", {p * p * c.out_channels()});
  t.add("final_layer.adaLN_modulation.1.weight", {2 * D, D});
  t.add("final_layer.adaLN_modulation.1.bias", {2 * D});
  return t;
}

// The forward of the eval pass (the side block does not run there).
double mdt_flops(const MDTConfig& c) {
  const double D = c.hidden_size, L = c.tokens(), p = c.patch_size;
  double f = 2 * L * D * c.in_channels * p * p + 2 * (kFreqDim * D + D * D);
  const double block = 2 * L * D * (4 * D + 2 * c.mlp_hidden()) + 4 * L * L * D + 2 * D * 6 * D;
  f += c.main_blocks() * block;
  if (!c.v1()) f += (c.main_blocks() - c.half()) * 2 * L * 2 * D * D;  // skip linears
  f += 2 * L * D * p * p * c.out_channels() + 2 * D * 2 * D;
  return f;
}

NetSpec mdt_spec(const MDTConfig& c) {
  NetSpec s;
  s.name = c.name;
  s.in_chans = c.in_channels;
  s.out_chans = c.out_channels();
  s.img_size = c.input_size;
  s.num_classes = c.label_rows();
  s.null_class = c.class_dropout_prob > 0 ? c.num_classes : -1;
  s.guidance_channels = std::min(3, c.out_channels());  // forward_with_cfg: model_out[:, :3]
  return s;
}

struct BlockActs {
  float* fused = nullptr;  // the skip_linear output (the block's input) where the block fuses
  AdaLNActs blk;
};

// A masked pass's tokens: per sample the kept positions (ids_keep, the first len_keep of the
// shuffle), and the index lists of its row moves on the backend (rows of [B, L] tensors: kept
// ones in ids_keep order, masked ones in position order).
struct Mask {
  int keep = 0;
  std::vector<int32_t> ids_keep;  // [B, keep]
  // RowLists handles: ids_keep, the kept and the masked rows, and a 0 per masked row (the row of
  // the one mask_token that every masked row receives).
  size_t ids = 0, kept = 0, masked = 0, zeros = 0;
};

class MDT final : public PlannedNetwork {
 public:
  MDT(const MDTConfig& c, Backend& be)
      : PlannedNetwork(mdt_spec(c), mdt_table(c), be),
        c_(c),
        index_(relative_index_buffer(be, c.grid())),
        rows_(be) {
    const int D = c.hidden_size;
    ln_ = adaln_norm_consts(be_, consts_, D, kLnEps);
    const ParamTable& t = table_;
    patch_ = linear(t, "x_embedder.proj");
    cond_ = conditioning(t, D);
    final_.norm = ln_;
    final_.ada = linear(t, "final_layer.adaLN_modulation.1");
    final_.linear = linear(t, "final_layer.linear");
    for (int k = 0; k <= c.main_blocks(); ++k) {
      const std::string p = block_name(c, k) + ".";
      AdaLNBlock b;
      b.ada = linear(t, p + "adaLN_modulation.1");
      b.norm1 = b.norm2 = ln_;
      b.attn = attention(t, p + "attn.", c.num_heads);
      use_relative_bias(b.attn, t.at(p + "attn.rel_pos_bias.relative_position_bias_table").offset,
                        c.rel_rows(), index_.as<int32_t>(), c.tokens());
      b.mlp = mlp_gelu_tanh(t, p + "mlp.");
      blocks_.push_back(b);
      if (has_skip(c, k)) {
        // skip_linear(cat[x, skip]) as two GEMMs on the weight's column halves.
        const Linear s = linear(t, p + "skip_linear");
        skip_x_.push_back(column_slice(s, 0, D, true));
        skip_s_.push_back(column_slice(s, D, D, false));
      } else {
        skip_x_.emplace_back();
        skip_s_.emplace_back();
      }
    }
  }

  void init_random(uint64_t seed) override;
  void forward(const float* x, const float* t, const int32_t* y, const float* context, float* out,
               int B, bool train) override;
  void backward(const float* dout) override;
  double forward_flops() const override { return mdt_flops(c_); }
  int train_passes() const override { return c_.masked ? 2 : 1; }
  void set_train_pass(int pass, uint64_t seed, uint64_t first) override;
  void set_mask(const std::vector<int32_t>& ids_shuffle, int keep);

 protected:
  void check_loaded() override;

 private:
  void plan(int B, bool train) override;
  int side() const { return c_.main_blocks(); }  // the side block's index in blocks_
  // The skip a fusing block pops: an en_inblock's output (LIFO), or the embedded input.
  const float* skip_of(int k) const {
    return k < 2 * c_.half() ? out_[2 * c_.half() - 1 - k] : x0_;
  }
  void block_forward(int k, BlockActs& A, const float* x, float* out, int N);
  // G.dX: d(out) in, d(x) out; a fusing block adds its skip's gradient into dskip.
  void block_backward(int k, BlockActs& A, const float* x, float* dskip, int N);
  void side_forward(BlockActs& A);
  void side_backward(BlockActs& A);

  MDTConfig c_;
  DeviceBuffer consts_, index_;
  Norm ln_;
  Linear patch_;
  Conditioning cond_;
  FinalLayer final_;
  std::vector<AdaLNBlock> blocks_;       // main blocks, then the side block
  std::vector<Linear> skip_x_, skip_s_;  // per block: skip_linear's x and skip halves

  // The masked pass: the next forward(train) runs it when pass_ is 1.
  int pass_ = 0;
  bool injected_ = false;  // set_mask() gave the mask of the next masked pass
  uint64_t seed_ = 0, first_ = 0;
  Mask mask_;
  RowLists rows_;  // the mask's index lists on the backend
  bool masked_now_ = false;

  // The plan of the last forward (B_, train_, arena_: PlannedNetwork).
  float *cols_, *patches_, *x0_, *enc_in_, *dec_in_;
  CondActs cond_acts_;
  FinalActs final_acts_;
  std::vector<float*> in_, out_;  // per main block: its input (before a fusion) and output
  std::vector<BlockActs> acts_;
  // The side-interpolater (masked pass): encoder tokens and mask tokens unshuffled, + decoder_pos
  // (side_in: x_before), the side block's output.
  float *side_raw_ = nullptr, *side_in_ = nullptr, *side_out_ = nullptr, *token_ = nullptr;
  AdaLNGrads G_;
  float *dtok_, *dx0_, *dF_, *dT_;
  std::vector<float*> dskip_;
};

void MDT::plan(int B, bool train) {
  if (!replan(B, train)) return;
  const size_t D = c_.hidden_size, L = c_.tokens(), M = size_t(B) * L;
  const size_t cpp = size_t(c_.in_channels) * c_.patch_size * c_.patch_size;
  const size_t pd = size_t(c_.patch_size) * c_.patch_size * c_.out_channels();
  const int nb = c_.main_blocks(), h = c_.half();
  const bool side = train && c_.masked;
  if (side) rows_.reserve(2 * M);  // the mask's lists: ids_keep, kept, masked and zeros rows
  arena_->plan([&](Arena& a) {
    cols_ = a.act(M * cpp);
    patches_ = a.act(M * D);
    x0_ = a.act(M * D);
    enc_in_ = side ? a.act(M * D) : nullptr;
    dec_in_ = a.act(M * D);
    plan_conditioning(a, cond_acts_, B, int(D), train);
    in_.assign(nb, nullptr);
    out_.assign(nb, nullptr);
    plan_streams(a, out_, M * D, train, h);  // inference keeps the en_inblocks' outputs (skips)
    acts_.assign(train ? nb + (side ? 1 : 0) : 1, BlockActs{});
    for (size_t k = 0; k < acts_.size(); ++k) {
      if (train ? (int(k) < nb && has_skip(c_, int(k))) : !c_.v1() && h + c_.decode_layer > 0)
        acts_[k].fused = a.act(M * D);
      plan_block(a, blocks_[k], acts_[k].blk, B, int(L));
    }
    if (side) {
      side_raw_ = a.act(M * D);
      side_in_ = a.act(M * D);
      side_out_ = a.act(M * D);
      token_ = a.act(D);  // mask_token as an act row
    }
    plan_final(a, final_, final_acts_, B, int(L));
    if (train) {
      plan_block_grads(a, blocks_[0], G_, B, int(L));
      dtok_ = a.act(M * pd);
      dx0_ = a.act(M * D);
      dF_ = a.act(M * D);
      dT_ = a.act(M * D);
      dskip_.assign(h, nullptr);
      for (auto& d : dskip_) d = a.act(M * D);
    }
  });
}

void MDT::set_mask(const std::vector<int32_t>& ids_shuffle, int keep) {
  const int L = c_.tokens();
  UVIT_CHECK(ids_shuffle.size() % size_t(L) == 0 && keep >= 1 && keep <= L,
             "mdt: a mask needs ids_shuffle [B, ", L, "] and 1 <= len_keep <= ", L);
  const int B = int(ids_shuffle.size() / size_t(L));
  mask_.keep = keep;
  mask_.ids_keep.assign(size_t(B) * keep, 0);
  std::vector<int32_t> kept(size_t(B) * keep), masked;
  masked.reserve(size_t(B) * (L - keep));
  for (int b = 0; b < B; ++b) {
    std::vector<bool> seen(size_t(L), false), is_kept(size_t(L), false);
    for (int i = 0; i < L; ++i) {
      const int32_t v = ids_shuffle[size_t(b) * L + i];
      UVIT_CHECK(v >= 0 && v < L && !seen[size_t(v)], "mdt: ids_shuffle row ", b,
                 " is not a permutation of 0..", L - 1);
      seen[size_t(v)] = true;
      if (i < keep) {
        mask_.ids_keep[size_t(b) * keep + i] = v;
        kept[size_t(b) * keep + i] = b * L + v;
        is_kept[size_t(v)] = true;
      }
    }
    for (int l = 0; l < L; ++l)
      if (!is_kept[size_t(l)]) masked.push_back(b * L + l);
  }
  const long rows = long(B) * L;
  rows_.clear();
  mask_.ids = rows_.add(mask_.ids_keep, L, false, "mdt: ids_keep");
  mask_.kept = rows_.add(kept, rows, true, "mdt: kept rows");
  mask_.masked = rows_.add(masked, rows, true, "mdt: masked rows");
  mask_.zeros = rows_.add(std::vector<int32_t>(masked.size(), 0), 1, false, "mdt: mask_token rows");
  rows_.upload();
  pass_ = 1;
  injected_ = true;
}

void MDT::set_train_pass(int pass, uint64_t seed, uint64_t first) {
  UVIT_CHECK(pass == 0 || (pass == 1 && c_.masked), "mdt: no training pass ", pass,
             c_.masked ? "" : " (nnet.mask_ratio is null: no masked pass)");
  pass_ = pass;
  injected_ = false;
  seed_ = seed;
  first_ = first;
}

void MDT::forward(const float* x, const float* t, const int32_t* y, const float* context,
                  float* out, int B, bool train) {
  masked_now_ = train && pass_ == 1;
  UVIT_CHECK(!masked_now_ || c_.masked, "mdt: a masked pass needs nnet.mask_ratio");
  const Weights W = begin_forward(y, context, B, train);
  const int D = c_.hidden_size, C = c_.in_channels, S = c_.input_size, p = c_.patch_size;
  const int L = c_.tokens(), M = B * L, nb = c_.main_blocks(), ne = c_.enc();

  // x = x_embedder(x) + pos_embed; input_skip = x.
  be_.patch_im2col(x, cols_, B, C, S, p);
  linear_fwd(W, patch_, cols_, patch_.in, patches_, D, M);
  be_.tokens_fwd(nullptr, patches_, params_ + table_.at("pos_embed").offset, x0_, B, 0, L, D);
  conditioning_fwd(W, cond_, t, y, cond_acts_, B);

  int N = L;  // the encoder's tokens
  const float* enc = x0_;
  if (masked_now_) {
    if (!injected_) {
      // random_masking: r = mask_ratio + 0.2 U(0, 1) for the micro-batch (float32 as the
      // official tensors), len_keep = int(L (1 - r)), and per sample argsort of U(0, 1) noise.
      const float u = Philox(seed_, kStreamMaskRatio).uniform(first_);
      const float r = u * c_.spread() + float(c_.mask_ratio);
      const int keep = std::max(1, c_.v1() ? c_.min_keep() : int(float(L) * (1.f - r)));
      const Philox noise(seed_, kStreamMaskNoise);
      std::vector<int32_t> shuffle(size_t(B) * L);
      std::vector<float> score(static_cast<size_t>(L));
      for (int b = 0; b < B; ++b) {
        for (int l = 0; l < L; ++l)
          score[size_t(l)] = noise.uniform((first_ + b) * uint64_t(L) + l);
        int32_t* s = shuffle.data() + size_t(b) * L;
        std::iota(s, s + L, 0);
        std::stable_sort(s, s + L,
                         [&](int32_t i, int32_t j) { return score[size_t(i)] < score[size_t(j)]; });
      }
      set_mask(shuffle, keep);
    }
    UVIT_CHECK(mask_.ids_keep.size() == size_t(B) * mask_.keep, "mdt: the injected mask is for ",
               mask_.ids_keep.size() / size_t(mask_.keep), " samples, the batch has ", B);
    N = mask_.keep;
    be_.move_rows(enc_in_, nullptr, x0_, rows_.at(mask_.kept), long(B) * N, D, false);
    enc = enc_in_;
  }
  for (int k = 0; k < nb + 1; ++k)
    blocks_[k].attn.rel_ids = masked_now_ && k < ne ? rows_.at(mask_.ids) : nullptr;

  // Encoder: en_inblocks push, en_outblocks pop (MDTv1: plain blocks).
  for (int k = 0; k < ne; ++k) {
    in_[k] = k == 0 ? const_cast<float*>(enc) : out_[k - 1];
    block_forward(k, acts_[train ? k : 0], in_[k], out_[k], N);
  }
  const float* enc_out = ne > 0 ? out_[ne - 1] : enc;
  if (masked_now_) {
    side_forward(acts_[nb]);  // the side-interpolater fills the decoder's input
  } else {
    be_.tokens_fwd(nullptr, enc_out, params_ + table_.at("decoder_pos_embed").offset, dec_in_, B, 0,
                   L, D);
  }
  // Decoder: every de_block's skip is the embedded input (MDTv1: no skip).
  for (int k = ne; k < nb; ++k) {
    in_[k] = k == ne ? dec_in_ : out_[k - 1];
    block_forward(k, acts_[train ? k : 0], in_[k], out_[k], L);
  }
  const float* last = nb > ne ? out_[nb - 1] : dec_in_;
  final_fwd(W, final_, last, cond_acts_.sc, final_acts_, B, L);
  be_.unpatchify_fwd(final_acts_.tok, out, B, 0, c_.out_channels(), S, p);
  pass_ = 0;
  injected_ = false;
}

void MDT::block_forward(int k, BlockActs& A, const float* x, float* out, int N) {
  const Weights W{be_, params_, act_params_, grads_, quant_.get(), &table_};
  const int D = c_.hidden_size, M = B_ * N;
  const float* xin = x;
  if (has_skip(c_, k)) {
    // x = skip_linear(cat[x, skip]) replaces x (no residual, no norm).
    linear_fwd(W, skip_x_[k], x, D, A.fused, D, M);
    linear_fwd(W, skip_s_[k], skip_of(k), D, A.fused, D, M, A.fused);
    xin = A.fused;
  }
  block_fwd(W, blocks_[k], xin, cond_acts_.sc, A.blk, out, B_, N);
}

void MDT::side_forward(BlockActs& A) {
  // forward_side_interpolater: cat[x, mask_token ...] unshuffled by ids_restore, + decoder_pos
  // (x_before), the side block, then x = side(x) on masked tokens and x_before on kept ones.
  const Weights W{be_, params_, act_params_, grads_, quant_.get(), &table_};
  const int L = c_.tokens(), D = c_.hidden_size, N = mask_.keep;
  const float* enc_out = c_.enc() > 0 ? out_[c_.enc() - 1] : enc_in_;
  const long kept = long(B_) * N, masked = long(B_) * (L - N);
  be_.to_act(params_ + table_.at("mask_token").offset, token_, size_t(D));
  be_.move_rows(side_raw_, rows_.at(mask_.masked), token_, rows_.at(mask_.zeros), masked, D, false);
  be_.move_rows(side_raw_, rows_.at(mask_.kept), enc_out, nullptr, kept, D, false);
  be_.tokens_fwd(nullptr, side_raw_, params_ + table_.at("decoder_pos_embed").offset, side_in_, B_,
                 0, L, D);
  block_fwd(W, blocks_[side()], side_in_, cond_acts_.sc, A.blk, side_out_, B_, L);
  be_.copy_act(dec_in_, side_out_, size_t(B_) * L * D);
  const int32_t* k = rows_.at(mask_.kept);
  be_.move_rows(dec_in_, k, side_in_, k, kept, D, false);
}

void MDT::block_backward(int k, BlockActs& A, const float* x, float* dskip, int N) {
  const Weights W{be_, params_, act_params_, grads_, quant_.get(), &table_};
  const int D = c_.hidden_size, M = B_ * N;
  block_bwd(W, blocks_[k], A.blk, cond_acts_.sc, G_, cond_acts_.dsc, B_, N);
  if (has_skip(c_, k)) {
    be_.copy_act(dF_, G_.dX, size_t(M) * D);
    linear_bwd(W, skip_s_[k], skip_of(k), D, dF_, D, dskip, D, M, k < 2 * c_.half() ? 0.f : 1.f);
    linear_bwd(W, skip_x_[k], x, D, dF_, D, G_.dX, D, M);
  }
}

void MDT::side_backward(BlockActs& A) {
  // G_.dX holds d(dec_in) [B, L]; leaves d(encoder output) [B, keep] in G_.dX.
  const Weights W{be_, params_, act_params_, grads_, quant_.get(), &table_};
  const int L = c_.tokens(), D = c_.hidden_size, N = mask_.keep;
  const long kept = long(B_) * N, masked = long(B_) * (L - N);
  const int32_t* k = rows_.at(mask_.kept);
  // d(side out) = d(dec_in) on masked rows; d(x_before) = d(dec_in) on kept rows + the block's.
  be_.copy_act(dT_, G_.dX, size_t(B_) * L * D);
  be_.move_rows(G_.dX, k, nullptr, nullptr, kept, D, false);  // zero rows
  block_bwd(W, blocks_[side()], A.blk, cond_acts_.sc, G_, cond_acts_.dsc, B_, L);
  be_.move_rows(G_.dX, k, dT_, k, kept, D, true);
  // x_before = unshuffled + decoder_pos_embed.
  be_.tokens_bwd(G_.dX, nullptr, dT_, grads_ + table_.at("decoder_pos_embed").offset, B_, 0, L, D);
  // Kept rows go back to the encoder output [B, keep]; masked rows, gathered into dF_ (free
  // here), sum into mask_token's gradient in one reduction.
  be_.move_rows(G_.dX, nullptr, dT_, k, kept, D, false);
  be_.move_rows(dF_, nullptr, dT_, rows_.at(mask_.masked), masked, D, false);
  if (masked > 0) be_.bias_grad(dF_, grads_ + table_.at("mask_token").offset, int(masked), D);
}

void MDT::backward(const float* dout) {
  const Weights W = begin_backward();
  const int B = B_, D = c_.hidden_size, S = c_.input_size, p = c_.patch_size;
  const int L = c_.tokens(), M = B * L, nb = c_.main_blocks(), h = c_.half(), ne = c_.enc();
  const int N = masked_now_ ? mask_.keep : L;

  be_.unpatchify_bwd(dout, dtok_, B, 0, c_.out_channels(), S, p);
  const float* last = nb > ne ? out_[nb - 1] : dec_in_;
  final_bwd(W, final_, last, cond_acts_.sc, final_acts_, dtok_, G_, cond_acts_.dsc, B, L);
  // train.overlap (docs/distributed.md, "Overlap"): each block's tensors once its backward ran.
  grads_ready("final_layer.");
  // Decoder: the skips' gradients add into d(input_skip).
  be_.zero_act(dx0_, size_t(M) * D);
  for (int k = nb - 1; k >= ne; --k) {
    block_backward(k, acts_[k], in_[k], dx0_, L);
    grads_ready(block_name(c_, k) + ".");
  }
  // G_.dX = d(dec_in). The side block has its gradient now (none in an unmasked pass).
  if (masked_now_) side_backward(acts_[nb]);
  grads_ready(block_name(c_, nb) + ".");
  if (!masked_now_) {
    be_.tokens_bwd(G_.dX, nullptr, dT_, grads_ + table_.at("decoder_pos_embed").offset, B, 0, L, D);
    be_.copy_act(G_.dX, dT_, size_t(M) * D);
  }
  // Encoder in reverse; an en_inblock's output also receives its en_outblock's skip gradient.
  for (int k = ne - 1; k >= 0; --k) {
    if (k < h) be_.axpy_act(G_.dX, dskip_[k], 1.f, size_t(B) * N * D);
    block_backward(k, acts_[k], in_[k], has_skip(c_, k) ? dskip_[2 * h - 1 - k] : nullptr, N);
    grads_ready(block_name(c_, k) + ".");
  }
  // G_.dX = d(encoder input): x0 itself, or its kept rows.
  if (masked_now_)
    be_.move_rows(dx0_, rows_.at(mask_.kept), G_.dX, nullptr, long(B) * N, D, true);
  else
    be_.axpy_act(dx0_, G_.dX, 1.f, size_t(M) * D);
  be_.tokens_bwd(dx0_, nullptr, dT_, grads_ + table_.at("pos_embed").offset, B, 0, L, D);
  linear_bwd(W, patch_, cols_, patch_.in, dT_, D, nullptr, 0, M);
  conditioning_bwd(W, cond_, cond_acts_, B);
}

void MDT::check_loaded() {
  // The relative_position_index buffers must hold the formula (the kernels use their own copy).
  for (int k = 0; k <= c_.main_blocks(); ++k)
    check_relative_index(be_, params_, table_,
                         block_name(c_, k) + ".attn.rel_pos_bias.relative_position_index",
                         c_.grid(), "docs/mdt.md", ("an " + c_.name).c_str());
}

void MDT::init_random(uint64_t seed) {
  const int g = c_.grid(), D = c_.hidden_size;
  const std::vector<int32_t> idx = relative_index(g);
  write_params(init_adaln(table_, seed, [&](const ParamEntry& e, const Philox& rng, float* p) {
    const std::string& n = e.name;
    if (n == "pos_embed" || n == "decoder_pos_embed") {
      sincos_2d(p, g, D);
    } else if (n == "mask_token") {
      // N(0, 0.02) with mask_ratio, else zeros (and frozen).
      for (size_t i = 0; c_.masked && i < e.numel; ++i) p[i] = 0.02f * rng.normal(i);
    } else if (n.ends_with("relative_position_bias_table")) {
      // trunc_normal_(std=.02): truncated at +-2 (absolute), i.e. 100 sigma: a plain normal.
      for (size_t i = 0; i < e.numel; ++i) p[i] = 0.02f * rng.normal(i);
    } else if (n.ends_with("relative_position_index")) {
      std::copy(idx.begin(), idx.end(), p);
    } else {
      return false;  // skip_linear: xavier_uniform like every Linear (_basic_init)
    }
    return true;
  }));
}

}  // namespace

void mdt_set_mask(Network& net, const std::vector<int32_t>& ids_shuffle, int len_keep) {
  auto* m = dynamic_cast<MDT*>(&net);
  UVIT_CHECK(m, "mdt_set_mask: network ", net.spec().name, " is not an mdt");
  m->set_mask(ids_shuffle, len_keep);
}

NetworkFamily mdt_family(const std::string& name) {
  const auto parse_named = [name](const json& nnet) { return parse(nnet, name); };
  return config_family<MDT>(name, parse_named, mdt_spec, mdt_table, mdt_flops);
}

}  // namespace uvit
