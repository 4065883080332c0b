// SimDevBackend's kernels: every one checks its pointer arguments and opens the arena (enter), then
// runs the CPU backend's (the ones with defaults in Backend too, so that results are the CPU's bit
// for bit).
#include "backend/simdev/simdev_backend.hpp"

namespace uvit {

void SimDevBackend::copy(float* dst, const float* src, size_t n) {
  const auto open = enter("copy", {{"dst", dst}, {"src", src}});
  cpu_->copy(dst, src, n);
}

void SimDevBackend::copy_2d(float* dst, long ld_dst, const float* src, long ld_src, long rows,
                            long cols) {
  const auto open = enter("copy_2d", {{"dst", dst}, {"src", src}});
  cpu_->copy_2d(dst, ld_dst, src, ld_src, rows, cols);
}

void SimDevBackend::fill(float* dst, float v, size_t n) {
  const auto open = enter("fill", {{"dst", dst}});
  cpu_->fill(dst, v, n);
}

void SimDevBackend::axpy(float* y, const float* x, float a, size_t n) {
  const auto open = enter("axpy", {{"y", y}, {"x", x}});
  cpu_->axpy(y, x, a, n);
}

void SimDevBackend::scale(float* x, float a, size_t n) {
  const auto open = enter("scale", {{"x", x}});
  cpu_->scale(x, a, n);
}

double SimDevBackend::sum_squares(const float* x, size_t n) {
  const auto open = enter("sum_squares", {{"x", x}});
  return cpu_->sum_squares(x, n);
}

void SimDevBackend::to_act(const float* src, float* dst_act, size_t n) {
  const auto open = enter("to_act", {{"src", src}, {"dst_act", dst_act}});
  cpu_->to_act(src, dst_act, n);
}

void SimDevBackend::params_to_act(const float* src, float* dst_act, size_t n) {
  const auto open = enter("params_to_act", {{"src", src}, {"dst_act", dst_act}});
  cpu_->params_to_act(src, dst_act, n);
}

void SimDevBackend::from_act(const float* src_act, float* dst, size_t n) {
  const auto open = enter("from_act", {{"src_act", src_act}, {"dst", dst}});
  cpu_->from_act(src_act, dst, n);
}

void SimDevBackend::copy_act(float* dst, const float* src, size_t n) {
  const auto open = enter("copy_act", {{"dst", dst}, {"src", src}});
  cpu_->copy_act(dst, src, n);
}

void SimDevBackend::zero_act(float* dst, size_t n) {
  const auto open = enter("zero_act", {{"dst", dst}});
  cpu_->zero_act(dst, n);
}

void SimDevBackend::axpy_act(float* y, const float* x, float a, size_t n) {
  const auto open = enter("axpy_act", {{"y", y}, {"x", x}});
  cpu_->axpy_act(y, x, a, n);
}

void SimDevBackend::move_rows(float* dst, const int32_t* dst_idx, const float* src,
                              const int32_t* src_idx, long n, long row_len, bool accumulate,
                              bool act) {
  const auto open =
      enter("move_rows", {{"dst", dst}, {"dst_idx", dst_idx}, {"src", src}, {"src_idx", src_idx}});
  cpu_->move_rows(dst, dst_idx, src, src_idx, n, row_len, accumulate, act);
}

void SimDevBackend::copy_3d(float* dst, long ld_dst, long bs_dst, const float* src, long ld_src,
                            long bs_src, long blocks, long rows, long cols, bool act) {
  const auto open = enter("copy_3d", {{"dst", dst}, {"src", src}});
  cpu_->copy_3d(dst, ld_dst, bs_dst, src, ld_src, bs_src, blocks, rows, cols, act);
}

void SimDevBackend::gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                         const float* A, int lda, const float* B, int ldb, float beta, float* C,
                         int ldc) {
  const auto open = enter("gemm", {{"A", A}, {"B", B}, {"C", C}});
  cpu_->gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void SimDevBackend::add_bias(float* y, const float* b, int M, int N) {
  const auto open = enter("add_bias", {{"y", y}, {"b", b}});
  cpu_->add_bias(y, b, M, N);
}

void SimDevBackend::bias_grad_strided(const float* dy, long ld_dy, float* db, int M, int N) {
  const auto open = enter("bias_grad_strided", {{"dy", dy}, {"db", db}});
  cpu_->bias_grad_strided(dy, ld_dy, db, M, N);
}

void SimDevBackend::gemm_wgrad(int M, int N, int K, const float* A, int lda, const float* B,
                               int ldb, float* C, int ldc) {
  const auto open = enter("gemm_wgrad", {{"A", A}, {"B", B}, {"C", C}});
  cpu_->gemm_wgrad(M, N, K, A, lda, B, ldb, C, ldc);
}

void SimDevBackend::linear(const float* x, int ldx, const float* w, int ldw, const float* bias,
                           const float* residual, float* y, int ldy, int M, int N, int K) {
  const auto open =
      enter("linear", {{"x", x}, {"w", w}, {"bias", bias}, {"residual", residual}, {"y", y}});
  cpu_->linear(x, ldx, w, ldw, bias, residual, y, ldy, M, N, K);
}

void SimDevBackend::layernorm_fwd(const float* x, const float* w, const float* b, float* y,
                                  float* mean, float* rstd, int M, int D, float eps) {
  const auto open = enter("layernorm_fwd",
                          {{"x", x}, {"w", w}, {"b", b}, {"y", y}, {"mean", mean}, {"rstd", rstd}});
  cpu_->layernorm_fwd(x, w, b, y, mean, rstd, M, D, eps);
}

void SimDevBackend::layernorm_bwd(const float* dy, const float* x, const float* w,
                                  const float* mean, const float* rstd, float* dx, float* dw,
                                  float* db, int M, int D) {
  const auto open = enter("layernorm_bwd", {{"dy", dy},
                                            {"x", x},
                                            {"w", w},
                                            {"mean", mean},
                                            {"rstd", rstd},
                                            {"dx", dx},
                                            {"dw", dw},
                                            {"db", db}});
  cpu_->layernorm_bwd(dy, x, w, mean, rstd, dx, dw, db, M, D);
}

void SimDevBackend::gelu_fwd(const float* x, float* y, size_t n) {
  const auto open = enter("gelu_fwd", {{"x", x}, {"y", y}});
  cpu_->gelu_fwd(x, y, n);
}

void SimDevBackend::gelu_bwd(const float* dy, const float* x, float* dx, size_t n) {
  const auto open = enter("gelu_bwd", {{"dy", dy}, {"x", x}, {"dx", dx}});
  cpu_->gelu_bwd(dy, x, dx, n);
}

void SimDevBackend::silu_fwd(const float* x, float* y, size_t n) {
  const auto open = enter("silu_fwd", {{"x", x}, {"y", y}});
  cpu_->silu_fwd(x, y, n);
}

void SimDevBackend::silu_bwd(const float* dy, const float* x, float* dx, size_t n) {
  const auto open = enter("silu_bwd", {{"dy", dy}, {"x", x}, {"dx", dx}});
  cpu_->silu_bwd(dy, x, dx, n);
}

void SimDevBackend::gelu_tanh_fwd(const float* x, float* y, size_t n) {
  const auto open = enter("gelu_tanh_fwd", {{"x", x}, {"y", y}});
  cpu_->gelu_tanh_fwd(x, y, n);
}

void SimDevBackend::gelu_tanh_bwd(const float* dy, const float* x, float* dx, size_t n) {
  const auto open = enter("gelu_tanh_bwd", {{"dy", dy}, {"x", x}, {"dx", dx}});
  cpu_->gelu_tanh_bwd(dy, x, dx, n);
}

void SimDevBackend::tanh_fwd(const float* x, float* y, size_t n) {
  const auto open = enter("tanh_fwd", {{"x", x}, {"y", y}});
  cpu_->tanh_fwd(x, y, n);
}

void SimDevBackend::tanh_bwd(const float* dy, const float* x, float* dx, size_t n) {
  const auto open = enter("tanh_bwd", {{"dy", dy}, {"x", x}, {"dx", dx}});
  cpu_->tanh_bwd(dy, x, dx, n);
}

void SimDevBackend::modulate_fwd(const float* x, const float* shift, const float* scale, int ldm,
                                 float* y, int B, int N, int D) {
  const auto open = enter("modulate_fwd", {{"x", x}, {"shift", shift}, {"scale", scale}, {"y", y}});
  cpu_->modulate_fwd(x, shift, scale, ldm, y, B, N, D);
}

void SimDevBackend::modulate_bwd(const float* dy, const float* x, const float* scale, int ldm,
                                 float* dx, float* dshift, float* dscale, int B, int N, int D) {
  const auto open = enter(
      "modulate_bwd",
      {{"dy", dy}, {"x", x}, {"scale", scale}, {"dx", dx}, {"dshift", dshift}, {"dscale", dscale}});
  cpu_->modulate_bwd(dy, x, scale, ldm, dx, dshift, dscale, B, N, D);
}

void SimDevBackend::gate_fwd(const float* x, const float* y, const float* gate, int ldm, float* out,
                             int B, int N, int D) {
  const auto open = enter("gate_fwd", {{"x", x}, {"y", y}, {"gate", gate}, {"out", out}});
  cpu_->gate_fwd(x, y, gate, ldm, out, B, N, D);
}

void SimDevBackend::gate_bwd(const float* dout, const float* y, const float* gate, int ldm,
                             float* dy, float* dgate, int B, int N, int D) {
  const auto open =
      enter("gate_bwd", {{"dout", dout}, {"y", y}, {"gate", gate}, {"dy", dy}, {"dgate", dgate}});
  cpu_->gate_bwd(dout, y, gate, ldm, dy, dgate, B, N, D);
}

void SimDevBackend::rmsnorm_fwd(const float* x, const float* w, float* y, float* rstd, int M, int G,
                                int D, int ld, float eps) {
  const auto open = enter("rmsnorm_fwd", {{"x", x}, {"w", w}, {"y", y}, {"rstd", rstd}});
  cpu_->rmsnorm_fwd(x, w, y, rstd, M, G, D, ld, eps);
}

void SimDevBackend::rmsnorm_bwd(const float* dy, const float* x, const float* w, const float* rstd,
                                float* dx, float* dw, int M, int G, int D, int ld,
                                bool accumulate) {
  const auto open = enter("rmsnorm_bwd",
                          {{"dy", dy}, {"x", x}, {"w", w}, {"rstd", rstd}, {"dx", dx}, {"dw", dw}});
  cpu_->rmsnorm_bwd(dy, x, w, rstd, dx, dw, M, G, D, ld, accumulate);
}

void SimDevBackend::swiglu_fwd(const float* x12, float* y, int M, int H) {
  const auto open = enter("swiglu_fwd", {{"x12", x12}, {"y", y}});
  cpu_->swiglu_fwd(x12, y, M, H);
}

void SimDevBackend::swiglu_bwd(const float* dy, int ldy, const float* x12, float* dx12, int M,
                               int H) {
  const auto open = enter("swiglu_bwd", {{"dy", dy}, {"x12", x12}, {"dx12", dx12}});
  cpu_->swiglu_bwd(dy, ldy, x12, dx12, M, H);
}

void SimDevBackend::rope(float* x, const float* cos, const float* sin, int B, int N, int G, int Dh,
                         int ld, bool inverse, int sec) {
  const auto open = enter("rope", {{"x", x}, {"cos", cos}, {"sin", sin}});
  cpu_->rope(x, cos, sin, B, N, G, Dh, ld, inverse, sec);
}

void SimDevBackend::copy_act_2d(float* dst, long ld_dst, const float* src, long ld_src, long rows,
                                long cols) {
  const auto open = enter("copy_act_2d", {{"dst", dst}, {"src", src}});
  cpu_->copy_act_2d(dst, ld_dst, src, ld_src, rows, cols);
}

void SimDevBackend::attention_fwd(const float* qkv, float* out, float* lse, int B, int N, int H,
                                  int Dh, float scale) {
  const auto open = enter("attention_fwd", {{"qkv", qkv}, {"out", out}, {"lse", lse}});
  cpu_->attention_fwd(qkv, out, lse, B, N, H, Dh, scale);
}

void SimDevBackend::attention_bwd(const float* dout, const float* qkv, const float* out,
                                  const float* lse, float* dqkv, int B, int N, int H, int Dh,
                                  float scale) {
  const auto open = enter(
      "attention_bwd", {{"dout", dout}, {"qkv", qkv}, {"out", out}, {"lse", lse}, {"dqkv", dqkv}});
  cpu_->attention_bwd(dout, qkv, out, lse, dqkv, B, N, H, Dh, scale);
}

void SimDevBackend::attention_varlen_fwd(const float* qkv, const int32_t* lens, float* out,
                                         float* lse, int B, int N, int H, int Dh, float scale) {
  const auto open = enter("attention_varlen_fwd", {{"qkv", qkv}, {"out", out}, {"lse", lse}});
  cpu_->attention_varlen_fwd(qkv, lens, out, lse, B, N, H, Dh, scale);
}

void SimDevBackend::attention_varlen_bwd(const float* dout, const float* qkv, const float* out,
                                         const float* lse, const int32_t* lens, float* dqkv, int B,
                                         int N, int H, int Dh, float scale) {
  const auto open =
      enter("attention_varlen_bwd",
            {{"dout", dout}, {"qkv", qkv}, {"out", out}, {"lse", lse}, {"dqkv", dqkv}});
  cpu_->attention_varlen_bwd(dout, qkv, out, lse, lens, dqkv, B, N, H, Dh, scale);
}

void SimDevBackend::attention_bias_fwd(const float* qkv, const AttnBias& bias, float* out,
                                       float* lse, int B, int N, int H, int Dh, float scale) {
  const auto open = enter("attention_bias_fwd", {{"qkv", qkv},
                                                 {"bias.table", bias.table},
                                                 {"bias.index", bias.index},
                                                 {"bias.ids", bias.ids},
                                                 {"out", out},
                                                 {"lse", lse}});
  cpu_->attention_bias_fwd(qkv, bias, out, lse, B, N, H, Dh, scale);
}

void SimDevBackend::attention_bias_bwd(const float* dout, const float* qkv, const float* out,
                                       const float* lse, const AttnBias& bias, float* dqkv,
                                       float* dtable, int B, int N, int H, int Dh, float scale) {
  const auto open = enter("attention_bias_bwd", {{"dout", dout},
                                                 {"qkv", qkv},
                                                 {"out", out},
                                                 {"lse", lse},
                                                 {"bias.table", bias.table},
                                                 {"bias.index", bias.index},
                                                 {"bias.ids", bias.ids},
                                                 {"dqkv", dqkv},
                                                 {"dtable", dtable}});
  cpu_->attention_bias_bwd(dout, qkv, out, lse, bias, dqkv, dtable, B, N, H, Dh, scale);
}

void SimDevBackend::patch_im2col(const float* x, float* cols, int B, int C, int S, int p, int W) {
  const auto open = enter("patch_im2col", {{"x", x}, {"cols", cols}});
  cpu_->patch_im2col(x, cols, B, C, S, p, W);
}

void SimDevBackend::patch_col2im(const float* cols, float* x, int B, int C, int S, int p, int W) {
  const auto open = enter("patch_col2im", {{"cols", cols}, {"x", x}});
  cpu_->patch_col2im(cols, x, B, C, S, p, W);
}

void SimDevBackend::tokens_fwd(const float* extras, const float* patches, const float* pos,
                               float* seq, int B, int E, int L, int D) {
  const auto open =
      enter("tokens_fwd", {{"extras", extras}, {"patches", patches}, {"pos", pos}, {"seq", seq}});
  cpu_->tokens_fwd(extras, patches, pos, seq, B, E, L, D);
}

void SimDevBackend::tokens_bwd(const float* dseq, float* dextras, float* dpatches, float* dpos,
                               int B, int E, int L, int D) {
  const auto open = enter(
      "tokens_bwd", {{"dseq", dseq}, {"dextras", dextras}, {"dpatches", dpatches}, {"dpos", dpos}});
  cpu_->tokens_bwd(dseq, dextras, dpatches, dpos, B, E, L, D);
}

void SimDevBackend::timestep_embedding(const float* t, float* out, int B, int D, int ldo) {
  const auto open = enter("timestep_embedding", {{"t", t}, {"out", out}});
  cpu_->timestep_embedding(t, out, B, D, ldo);
}

void SimDevBackend::fit_time_shift(const float* t, float* out, int n, float s) {
  const auto open = enter("fit_time_shift", {{"t", t}, {"out", out}});
  cpu_->fit_time_shift(t, out, n, s);
}

void SimDevBackend::embedding_fwd(const float* table, const int32_t* idx, float* out, int B, int D,
                                  int ldo) {
  const auto open = enter("embedding_fwd", {{"table", table}, {"idx", idx}, {"out", out}});
  cpu_->embedding_fwd(table, idx, out, B, D, ldo);
}

void SimDevBackend::embedding_bwd(const float* dout, const int32_t* idx, float* dtable, int B,
                                  int D, int ldo) {
  const auto open = enter("embedding_bwd", {{"dout", dout}, {"idx", idx}, {"dtable", dtable}});
  cpu_->embedding_bwd(dout, idx, dtable, B, D, ldo);
}

void SimDevBackend::unpatchify_fwd(const float* tok, float* img, int B, int E, int C, int S,
                                   int p) {
  const auto open = enter("unpatchify_fwd", {{"tok", tok}, {"img", img}});
  cpu_->unpatchify_fwd(tok, img, B, E, C, S, p);
}

void SimDevBackend::unpatchify_bwd(const float* dimg, float* dtok, int B, int E, int C, int S,
                                   int p) {
  const auto open = enter("unpatchify_bwd", {{"dimg", dimg}, {"dtok", dtok}});
  cpu_->unpatchify_bwd(dimg, dtok, B, E, C, S, p);
}

void SimDevBackend::conv3x3_fwd(const float* x, const float* w, const float* b, float* y, int B,
                                int Cin, int Cout, int H, int W) {
  const auto open = enter("conv3x3_fwd", {{"x", x}, {"w", w}, {"b", b}, {"y", y}});
  cpu_->conv3x3_fwd(x, w, b, y, B, Cin, Cout, H, W);
}

void SimDevBackend::conv3x3_im2col(const float* x, float* cols, int B, int C, int H, int W,
                                   int stride) {
  const auto open = enter("conv3x3_im2col", {{"x", x}, {"cols", cols}});
  cpu_->conv3x3_im2col(x, cols, B, C, H, W, stride);
}

void SimDevBackend::conv3x3_col2im(const float* cols, float* x, int B, int C, int H, int W,
                                   int stride) {
  const auto open = enter("conv3x3_col2im", {{"cols", cols}, {"x", x}});
  cpu_->conv3x3_col2im(cols, x, B, C, H, W, stride);
}

void SimDevBackend::conv3x3_bwd(const float* dy, const float* x, const float* w, float* dx,
                                float* dw, float* db, int B, int Cin, int Cout, int H, int W) {
  const auto open =
      enter("conv3x3_bwd", {{"dy", dy}, {"x", x}, {"w", w}, {"dx", dx}, {"dw", dw}, {"db", db}});
  cpu_->conv3x3_bwd(dy, x, w, dx, dw, db, B, Cin, Cout, H, W);
}

void SimDevBackend::conv2d(const Conv2dShape& s, const float* x, const float* w, const float* b,
                           float* y) {
  const auto open = enter("conv2d", {{"x", x}, {"w", w}, {"b", b}, {"y", y}});
  cpu_->conv2d(s, x, w, b, y);
}

void SimDevBackend::group_norm(const float* x, const float* w, const float* b, float* y, int B,
                               int C, int HW, int G, float eps, bool swish) {
  const auto open = enter("group_norm", {{"x", x}, {"w", w}, {"b", b}, {"y", y}});
  cpu_->group_norm(x, w, b, y, B, C, HW, G, eps, swish);
}

void SimDevBackend::upsample_nearest2x(const float* x, float* y, int N, int H, int W) {
  const auto open = enter("upsample_nearest2x", {{"x", x}, {"y", y}});
  cpu_->upsample_nearest2x(x, y, N, H, W);
}

void SimDevBackend::spatial_attention(const float* q, const float* k, const float* v, float* out,
                                      int B, int C, int HW, float scale) {
  const auto open = enter("spatial_attention", {{"q", q}, {"k", k}, {"v", v}, {"out", out}});
  cpu_->spatial_attention(q, k, v, out, B, C, HW, scale);
}

void SimDevBackend::pool2d(const float* x, float* y, int B, int C, int H, int W, int k, int stride,
                           int pad, bool max, long x_stride, long y_stride) {
  const auto open = enter("pool2d", {{"x", x}, {"y", y}});
  cpu_->pool2d(x, y, B, C, H, W, k, stride, pad, max, x_stride, y_stride);
}

void SimDevBackend::global_avg_pool(const float* x, float* y, int N, int HW) {
  const auto open = enter("global_avg_pool", {{"x", x}, {"y", y}});
  cpu_->global_avg_pool(x, y, N, HW);
}

void SimDevBackend::channel_bias_act(float* x, const float* bias, int B, int C, int HW, bool relu,
                                     long stride) {
  const auto open = enter("channel_bias_act", {{"x", x}, {"bias", bias}});
  cpu_->channel_bias_act(x, bias, B, C, HW, relu, stride);
}

void SimDevBackend::resize_bilinear(const float* x, float* y, int planes, int H, int W, int oh,
                                    int ow, float scale, float shift, bool tf1) {
  const auto open = enter("resize_bilinear", {{"x", x}, {"y", y}});
  cpu_->resize_bilinear(x, y, planes, H, W, oh, ow, scale, shift, tf1);
}

void SimDevBackend::causal_attention_fwd(const float* qkv, float* out, int B, int N, int H, int Dh,
                                         float scale) {
  const auto open = enter("causal_attention_fwd", {{"qkv", qkv}, {"out", out}});
  cpu_->causal_attention_fwd(qkv, out, B, N, H, Dh, scale);
}

void SimDevBackend::adamw(float* p, const float* g, float* m, float* v, size_t n, float lr,
                          float beta1, float beta2, float eps, float weight_decay, long step) {
  const auto open = enter("adamw", {{"p", p}, {"g", g}, {"m", m}, {"v", v}});
  cpu_->adamw(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, step);
}

void SimDevBackend::adan(float* p, const float* g, float* m, float* d, float* n, float* gp,
                         size_t count, const AdanHyper& h, long step) {
  const auto open = enter("adan", {{"p", p}, {"g", g}, {"m", m}, {"d", d}, {"n", n}, {"gp", gp}});
  cpu_->adan(p, g, m, d, n, gp, count, h, step);
}

void SimDevBackend::ema(float* e, const float* p, size_t n, float decay) {
  const auto open = enter("ema", {{"e", e}, {"p", p}});
  cpu_->ema(e, p, n, decay);
}

void SimDevBackend::adamw_ema(float* p, const float* g, float* m, float* v, float* e, size_t n,
                              float lr, float beta1, float beta2, float eps, float weight_decay,
                              long step, float ema_decay) {
  const auto open = enter("adamw_ema", {{"p", p}, {"g", g}, {"m", m}, {"v", v}, {"e", e}});
  cpu_->adamw_ema(p, g, m, v, e, n, lr, beta1, beta2, eps, weight_decay, step, ema_decay);
}
}  // namespace uvit
