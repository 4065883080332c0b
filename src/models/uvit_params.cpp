// The official U-ViT state_dict layout (SPEC 4.1) and the forward FLOP count.
#include "uvit/error.hpp"
#include "uvit/model.hpp"

namespace uvit {

namespace {
void add_block(ParamTable& t, const std::string& p, const NetConfig& c, bool skip) {
  const int64_t D = c.embed_dim, H = c.mlp_hidden();
  t.add(p + ".norm1.weight", {D});
  t.add(p + ".norm1.bias", {D});
  t.add(p + ".attn.qkv.weight", {3 * D, D});
  if (c.qkv_bias) t.add(p + ".attn.qkv.bias", {3 * D});
  t.add(p + ".attn.proj.weight", {D, D});
  t.add(p + ".attn.proj.bias", {D});
  t.add(p + ".norm2.weight", {D});
  t.add(p + ".norm2.bias", {D});
  t.add(p + ".mlp.fc1.weight", {H, D});
  t.add(p + ".mlp.fc1.bias", {H});
  t.add(p + ".mlp.fc2.weight", {D, H});
  t.add(p + ".mlp.fc2.bias", {D});
  // concat_linear: Linear(2D -> D) over [x, skip]; add_linear, linear_add: Linear(D -> D); add:
  // none.
  if (skip && c.skip_mode != "add") {
    t.add(p + ".skip_linear.weight", {D, c.skip_mode == "concat_linear" ? 2 * D : D});
    t.add(p + ".skip_linear.bias", {D});
  }
  // time_cond adaln: (shift, scale) of norm1, then of norm2, from the time embedding.
  if (c.adaln()) {
    t.add(p + ".adaLN_modulation.weight", {4 * D, D});
    t.add(p + ".adaLN_modulation.bias", {4 * D});
  }
}
}  // namespace

ParamTable build_param_table(const NetConfig& c) {
  c.validate();
  ParamTable t;
  const int64_t D = c.embed_dim, C = c.in_chans, p = c.patch_size;
  if (c.learned_pos()) t.add("pos_embed", {1, c.tokens(), D});  // sincos_2d is a fixed buffer
  if (c.patch_embed == "conv_stack") {
    // Stride-2 3x3 convs, then the 1x1 projection to D (docs/configs.md).
    int64_t cin = C;
    for (int i = 0; i < c.stem_convs(); ++i) {
      const int64_t co = c.stem_channels(i);
      t.add(cat("patch_embed.convs.", i, ".weight"), {co, cin, 3, 3});
      t.add(cat("patch_embed.convs.", i, ".bias"), {co});
      cin = co;
    }
    t.add("patch_embed.proj.weight", {D, cin, 1, 1});
  } else {
    t.add("patch_embed.proj.weight", {D, C, p, p});
  }
  t.add("patch_embed.proj.bias", {D});
  if (c.mlp_time_embed) {
    t.add("time_embed.0.weight", {4 * D, D});
    t.add("time_embed.0.bias", {4 * D});
    t.add("time_embed.2.weight", {D, 4 * D});
    t.add("time_embed.2.bias", {D});
  }
  if (c.t2i()) {
    t.add("context_embed.weight", {D, c.clip_dim});
    t.add("context_embed.bias", {D});
  } else if (c.num_classes > 0) {
    t.add("label_emb.weight", {c.num_classes, D});
  }
  for (int i = 0; i < c.blocks_per_side(); ++i) add_block(t, cat("in_blocks.", i), c, false);
  add_block(t, "mid_block", c, false);
  for (int i = 0; i < c.blocks_per_side(); ++i) add_block(t, cat("out_blocks.", i), c, c.skip);
  t.add("norm.weight", {D});
  t.add("norm.bias", {D});
  if (c.conv_before()) {
    t.add("token_conv.weight", {D, D, 3, 3});
    t.add("token_conv.bias", {D});
  }
  t.add("decoder_pred.weight", {c.patch_dim(), D});
  t.add("decoder_pred.bias", {c.patch_dim()});
  if (c.conv_after()) {
    t.add("final_layer.weight", {C, C, 3, 3});
    t.add("final_layer.bias", {C});
  }
  return t;
}

double forward_flops(const NetConfig& c) {
  const double N = c.tokens(), D = c.embed_dim, H = c.mlp_hidden(), L = c.num_patches();
  const double blocks = 2 * c.blocks_per_side() + 1;
  double per_block = 2 * N * D * 3 * D + 2 * 2 * N * N * D + 2 * N * D * D + 2 * 2 * N * D * H;
  double f = blocks * per_block;
  if (c.skip && c.skip_mode != "add")
    f += c.blocks_per_side() * 2 * N * (c.skip_mode == "concat_linear" ? 2 : 1) * D * D;
  if (c.patch_embed == "conv_stack") {
    double cin = c.in_chans, side = c.img_size;
    for (int i = 0; i < c.stem_convs(); ++i) {
      side /= 2;
      f += 2 * side * side * 9 * cin * c.stem_channels(i);
      cin = c.stem_channels(i);
    }
    f += 2 * L * D * cin;
  } else {
    f += 2 * L * D * c.patch_dim();  // patch embedding
  }
  if (c.adaln()) f += (2 * c.blocks_per_side() + 1) * 2.0 * D * 4 * D;
  f += 2 * (c.conv_before() ? L : N) * D * c.patch_dim();  // decoder_pred
  if (c.conv_before()) f += 2.0 * L * D * D * 9;
  if (c.mlp_time_embed) f += 2 * 2 * D * 4 * D;
  if (c.t2i()) f += 2.0 * c.num_clip_token * c.clip_dim * D;
  if (c.conv_after()) f += 2.0 * c.img_size * c.img_size * c.in_chans * c.in_chans * 9;
  return f;
}

}  // namespace uvit
