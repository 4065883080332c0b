// SimDevBackend's kernels: every one checks its pointer arguments, opens the arena and runs the
// CPU backend's (the ones with defaults in Backend too, so that results are the CPU's bit for bit).
#include "backend/simdev/simdev_backend.hpp"

namespace uvit {

using simdev::GuardedArena;

void SimDevBackend::copy(float* dst, const float* src, size_t n) {
  const GuardedArena::Open open(arena_);
  check("copy", "dst", dst);
  check("copy", "src", src);
  cpu_->copy(dst, src, n);
}

void SimDevBackend::copy_2d(float* dst, long ld_dst, const float* src, long ld_src, long rows,
                            long cols) {
  const GuardedArena::Open open(arena_);
  check("copy_2d", "dst", dst);
  check("copy_2d", "src", src);
  cpu_->copy_2d(dst, ld_dst, src, ld_src, rows, cols);
}

void SimDevBackend::fill(float* dst, float v, size_t n) {
  const GuardedArena::Open open(arena_);
  check("fill", "dst", dst);
  cpu_->fill(dst, v, n);
}

void SimDevBackend::axpy(float* y, const float* x, float a, size_t n) {
  const GuardedArena::Open open(arena_);
  check("axpy", "y", y);
  check("axpy", "x", x);
  cpu_->axpy(y, x, a, n);
}

void SimDevBackend::scale(float* x, float a, size_t n) {
  const GuardedArena::Open open(arena_);
  check("scale", "x", x);
  cpu_->scale(x, a, n);
}

double SimDevBackend::sum_squares(const float* x, size_t n) {
  const GuardedArena::Open open(arena_);
  check("sum_squares", "x", x);
  return cpu_->sum_squares(x, n);
}

void SimDevBackend::to_act(const float* src, float* dst_act, size_t n) {
  const GuardedArena::Open open(arena_);
  check("to_act", "src", src);
  check("to_act", "dst_act", dst_act);
  cpu_->to_act(src, dst_act, n);
}

void SimDevBackend::params_to_act(const float* src, float* dst_act, size_t n) {
  const GuardedArena::Open open(arena_);
  check("params_to_act", "src", src);
  check("params_to_act", "dst_act", dst_act);
  cpu_->params_to_act(src, dst_act, n);
}

void SimDevBackend::from_act(const float* src_act, float* dst, size_t n) {
  const GuardedArena::Open open(arena_);
  check("from_act", "src_act", src_act);
  check("from_act", "dst", dst);
  cpu_->from_act(src_act, dst, n);
}

void SimDevBackend::copy_act(float* dst, const float* src, size_t n) {
  const GuardedArena::Open open(arena_);
  check("copy_act", "dst", dst);
  check("copy_act", "src", src);
  cpu_->copy_act(dst, src, n);
}

void SimDevBackend::zero_act(float* dst, size_t n) {
  const GuardedArena::Open open(arena_);
  check("zero_act", "dst", dst);
  cpu_->zero_act(dst, n);
}

void SimDevBackend::axpy_act(float* y, const float* x, float a, size_t n) {
  const GuardedArena::Open open(arena_);
  check("axpy_act", "y", y);
  check("axpy_act", "x", x);
  cpu_->axpy_act(y, x, a, n);
}

void SimDevBackend::move_rows(float* dst, const int32_t* dst_idx, const float* src,
                              const int32_t* src_idx, long n, long row_len, bool accumulate,
                              bool act) {
  const GuardedArena::Open open(arena_);
  check("move_rows", "dst", dst);
  check("move_rows", "dst_idx", dst_idx);
  check("move_rows", "src", src);
  check("move_rows", "src_idx", src_idx);
  cpu_->move_rows(dst, dst_idx, src, src_idx, n, row_len, accumulate, act);
}

void SimDevBackend::copy_3d(float* dst, long ld_dst, long bs_dst, const float* src, long ld_src,
                            long bs_src, long blocks, long rows, long cols, bool act) {
  const GuardedArena::Open open(arena_);
  check("copy_3d", "dst", dst);
  check("copy_3d", "src", src);
  cpu_->copy_3d(dst, ld_dst, bs_dst, src, ld_src, bs_src, blocks, rows, cols, act);
}

void SimDevBackend::gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                         const float* A, int lda, const float* B, int ldb, float beta, float* C,
                         int ldc) {
  const GuardedArena::Open open(arena_);
  check("gemm", "A", A);
  check("gemm", "B", B);
  check("gemm", "C", C);
  cpu_->gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void SimDevBackend::add_bias(float* y, const float* b, int M, int N) {
  const GuardedArena::Open open(arena_);
  check("add_bias", "y", y);
  check("add_bias", "b", b);
  cpu_->add_bias(y, b, M, N);
}

void SimDevBackend::bias_grad_strided(const float* dy, long ld_dy, float* db, int M, int N) {
  const GuardedArena::Open open(arena_);
  check("bias_grad_strided", "dy", dy);
  check("bias_grad_strided", "db", db);
  cpu_->bias_grad_strided(dy, ld_dy, db, M, N);
}

void SimDevBackend::gemm_wgrad(int M, int N, int K, const float* A, int lda, const float* B,
                               int ldb, float* C, int ldc) {
  const GuardedArena::Open open(arena_);
  check("gemm_wgrad", "A", A);
  check("gemm_wgrad", "B", B);
  check("gemm_wgrad", "C", C);
  cpu_->gemm_wgrad(M, N, K, A, lda, B, ldb, C, ldc);
}

void SimDevBackend::linear(const float* x, int ldx, const float* w, int ldw, const float* bias,
                           const float* residual, float* y, int ldy, int M, int N, int K) {
  const GuardedArena::Open open(arena_);
  check("linear", "x", x);
  check("linear", "w", w);
  check("linear", "bias", bias);
  check("linear", "residual", residual);
  check("linear", "y", y);
  cpu_->linear(x, ldx, w, ldw, bias, residual, y, ldy, M, N, K);
}

void SimDevBackend::layernorm_fwd(const float* x, const float* w, const float* b, float* y,
                                  float* mean, float* rstd, int M, int D, float eps) {
  const GuardedArena::Open open(arena_);
  check("layernorm_fwd", "x", x);
  check("layernorm_fwd", "w", w);
  check("layernorm_fwd", "b", b);
  check("layernorm_fwd", "y", y);
  check("layernorm_fwd", "mean", mean);
  check("layernorm_fwd", "rstd", rstd);
  cpu_->layernorm_fwd(x, w, b, y, mean, rstd, M, D, eps);
}

void SimDevBackend::layernorm_bwd(const float* dy, const float* x, const float* w,
                                  const float* mean, const float* rstd, float* dx, float* dw,
                                  float* db, int M, int D) {
  const GuardedArena::Open open(arena_);
  check("layernorm_bwd", "dy", dy);
  check("layernorm_bwd", "x", x);
  check("layernorm_bwd", "w", w);
  check("layernorm_bwd", "mean", mean);
  check("layernorm_bwd", "rstd", rstd);
  check("layernorm_bwd", "dx", dx);
  check("layernorm_bwd", "dw", dw);
  check("layernorm_bwd", "db", db);
  cpu_->layernorm_bwd(dy, x, w, mean, rstd, dx, dw, db, M, D);
}

void SimDevBackend::gelu_fwd(const float* x, float* y, size_t n) {
  const GuardedArena::Open open(arena_);
  check("gelu_fwd", "x", x);
  check("gelu_fwd", "y", y);
  cpu_->gelu_fwd(x, y, n);
}

void SimDevBackend::gelu_bwd(const float* dy, const float* x, float* dx, size_t n) {
  const GuardedArena::Open open(arena_);
  check("gelu_bwd", "dy", dy);
  check("gelu_bwd", "x", x);
  check("gelu_bwd", "dx", dx);
  cpu_->gelu_bwd(dy, x, dx, n);
}

void SimDevBackend::silu_fwd(const float* x, float* y, size_t n) {
  const GuardedArena::Open open(arena_);
  check("silu_fwd", "x", x);
  check("silu_fwd", "y", y);
  cpu_->silu_fwd(x, y, n);
}

void SimDevBackend::silu_bwd(const float* dy, const float* x, float* dx, size_t n) {
  const GuardedArena::Open open(arena_);
  check("silu_bwd", "dy", dy);
  check("silu_bwd", "x", x);
  check("silu_bwd", "dx", dx);
  cpu_->silu_bwd(dy, x, dx, n);
}

void SimDevBackend::gelu_tanh_fwd(const float* x, float* y, size_t n) {
  const GuardedArena::Open open(arena_);
  check("gelu_tanh_fwd", "x", x);
  check("gelu_tanh_fwd", "y", y);
  cpu_->gelu_tanh_fwd(x, y, n);
}

void SimDevBackend::gelu_tanh_bwd(const float* dy, const float* x, float* dx, size_t n) {
  const GuardedArena::Open open(arena_);
  check("gelu_tanh_bwd", "dy", dy);
  check("gelu_tanh_bwd", "x", x);
  check("gelu_tanh_bwd", "dx", dx);
  cpu_->gelu_tanh_bwd(dy, x, dx, n);
}

void SimDevBackend::tanh_fwd(const float* x, float* y, size_t n) {
  const GuardedArena::Open open(arena_);
  check("tanh_fwd", "x", x);
  check("tanh_fwd", "y", y);
  cpu_->tanh_fwd(x, y, n);
}

void SimDevBackend::tanh_bwd(const float* dy, const float* x, float* dx, size_t n) {
  const GuardedArena::Open open(arena_);
  check("tanh_bwd", "dy", dy);
  check("tanh_bwd", "x", x);
  check("tanh_bwd", "dx", dx);
  cpu_->tanh_bwd(dy, x, dx, n);
}

void SimDevBackend::modulate_fwd(const float* x, const float* shift, const float* scale, int ldm,
                                 float* y, int B, int N, int D) {
  const GuardedArena::Open open(arena_);
  check("modulate_fwd", "x", x);
  check("modulate_fwd", "shift", shift);
  check("modulate_fwd", "scale", scale);
  check("modulate_fwd", "y", y);
  cpu_->modulate_fwd(x, shift, scale, ldm, y, B, N, D);
}

void SimDevBackend::modulate_bwd(const float* dy, const float* x, const float* scale, int ldm,
                                 float* dx, float* dshift, float* dscale, int B, int N, int D) {
  const GuardedArena::Open open(arena_);
  check("modulate_bwd", "dy", dy);
  check("modulate_bwd", "x", x);
  check("modulate_bwd", "scale", scale);
  check("modulate_bwd", "dx", dx);
  check("modulate_bwd", "dshift", dshift);
  check("modulate_bwd", "dscale", dscale);
  cpu_->modulate_bwd(dy, x, scale, ldm, dx, dshift, dscale, B, N, D);
}

void SimDevBackend::gate_fwd(const float* x, const float* y, const float* gate, int ldm, float* out,
                             int B, int N, int D) {
  const GuardedArena::Open open(arena_);
  check("gate_fwd", "x", x);
  check("gate_fwd", "y", y);
  check("gate_fwd", "gate", gate);
  check("gate_fwd", "out", out);
  cpu_->gate_fwd(x, y, gate, ldm, out, B, N, D);
}

void SimDevBackend::gate_bwd(const float* dout, const float* y, const float* gate, int ldm,
                             float* dy, float* dgate, int B, int N, int D) {
  const GuardedArena::Open open(arena_);
  check("gate_bwd", "dout", dout);
  check("gate_bwd", "y", y);
  check("gate_bwd", "gate", gate);
  check("gate_bwd", "dy", dy);
  check("gate_bwd", "dgate", dgate);
  cpu_->gate_bwd(dout, y, gate, ldm, dy, dgate, B, N, D);
}

void SimDevBackend::rmsnorm_fwd(const float* x, const float* w, float* y, float* rstd, int M, int G,
                                int D, int ld, float eps) {
  const GuardedArena::Open open(arena_);
  check("rmsnorm_fwd", "x", x);
  check("rmsnorm_fwd", "w", w);
  check("rmsnorm_fwd", "y", y);
  check("rmsnorm_fwd", "rstd", rstd);
  cpu_->rmsnorm_fwd(x, w, y, rstd, M, G, D, ld, eps);
}

void SimDevBackend::rmsnorm_bwd(const float* dy, const float* x, const float* w, const float* rstd,
                                float* dx, float* dw, int M, int G, int D, int ld,
                                bool accumulate) {
  const GuardedArena::Open open(arena_);
  check("rmsnorm_bwd", "dy", dy);
  check("rmsnorm_bwd", "x", x);
  check("rmsnorm_bwd", "w", w);
  check("rmsnorm_bwd", "rstd", rstd);
  check("rmsnorm_bwd", "dx", dx);
  check("rmsnorm_bwd", "dw", dw);
  cpu_->rmsnorm_bwd(dy, x, w, rstd, dx, dw, M, G, D, ld, accumulate);
}

void SimDevBackend::swiglu_fwd(const float* x12, float* y, int M, int H) {
  const GuardedArena::Open open(arena_);
  check("swiglu_fwd", "x12", x12);
  check("swiglu_fwd", "y", y);
  cpu_->swiglu_fwd(x12, y, M, H);
}

void SimDevBackend::swiglu_bwd(const float* dy, int ldy, const float* x12, float* dx12, int M,
                               int H) {
  const GuardedArena::Open open(arena_);
  check("swiglu_bwd", "dy", dy);
  check("swiglu_bwd", "x12", x12);
  check("swiglu_bwd", "dx12", dx12);
  cpu_->swiglu_bwd(dy, ldy, x12, dx12, M, H);
}

void SimDevBackend::rope(float* x, const float* cos, const float* sin, int B, int N, int G, int Dh,
                         int ld, bool inverse, int sec) {
  const GuardedArena::Open open(arena_);
  check("rope", "x", x);
  check("rope", "cos", cos);
  check("rope", "sin", sin);
  cpu_->rope(x, cos, sin, B, N, G, Dh, ld, inverse, sec);
}

void SimDevBackend::copy_act_2d(float* dst, long ld_dst, const float* src, long ld_src, long rows,
                                long cols) {
  const GuardedArena::Open open(arena_);
  check("copy_act_2d", "dst", dst);
  check("copy_act_2d", "src", src);
  cpu_->copy_act_2d(dst, ld_dst, src, ld_src, rows, cols);
}

void SimDevBackend::attention_fwd(const float* qkv, float* out, float* lse, int B, int N, int H,
                                  int Dh, float scale) {
  const GuardedArena::Open open(arena_);
  check("attention_fwd", "qkv", qkv);
  check("attention_fwd", "out", out);
  check("attention_fwd", "lse", lse);
  cpu_->attention_fwd(qkv, out, lse, B, N, H, Dh, scale);
}

void SimDevBackend::attention_bwd(const float* dout, const float* qkv, const float* out,
                                  const float* lse, float* dqkv, int B, int N, int H, int Dh,
                                  float scale) {
  const GuardedArena::Open open(arena_);
  check("attention_bwd", "dout", dout);
  check("attention_bwd", "qkv", qkv);
  check("attention_bwd", "out", out);
  check("attention_bwd", "lse", lse);
  check("attention_bwd", "dqkv", dqkv);
  cpu_->attention_bwd(dout, qkv, out, lse, dqkv, B, N, H, Dh, scale);
}

void SimDevBackend::attention_varlen_fwd(const float* qkv, const int32_t* lens, float* out,
                                         float* lse, int B, int N, int H, int Dh, float scale) {
  const GuardedArena::Open open(arena_);
  check("attention_varlen_fwd", "qkv", qkv);
  check("attention_varlen_fwd", "out", out);
  check("attention_varlen_fwd", "lse", lse);
  cpu_->attention_varlen_fwd(qkv, lens, out, lse, B, N, H, Dh, scale);
}

void SimDevBackend::attention_varlen_bwd(const float* dout, const float* qkv, const float* out,
                                         const float* lse, const int32_t* lens, float* dqkv, int B,
                                         int N, int H, int Dh, float scale) {
  const GuardedArena::Open open(arena_);
  check("attention_varlen_bwd", "dout", dout);
  check("attention_varlen_bwd", "qkv", qkv);
  check("attention_varlen_bwd", "out", out);
  check("attention_varlen_bwd", "lse", lse);
  check("attention_varlen_bwd", "dqkv", dqkv);
  cpu_->attention_varlen_bwd(dout, qkv, out, lse, lens, dqkv, B, N, H, Dh, scale);
}

void SimDevBackend::attention_bias_fwd(const float* qkv, const AttnBias& bias, float* out,
                                       float* lse, int B, int N, int H, int Dh, float scale) {
  const GuardedArena::Open open(arena_);
  check("attention_bias_fwd", "qkv", qkv);
  check("attention_bias_fwd", "bias.table", bias.table);
  check("attention_bias_fwd", "bias.index", bias.index);
  check("attention_bias_fwd", "bias.ids", bias.ids);
  check("attention_bias_fwd", "out", out);
  check("attention_bias_fwd", "lse", lse);
  cpu_->attention_bias_fwd(qkv, bias, out, lse, B, N, H, Dh, scale);
}

void SimDevBackend::attention_bias_bwd(const float* dout, const float* qkv, const float* out,
                                       const float* lse, const AttnBias& bias, float* dqkv,
                                       float* dtable, int B, int N, int H, int Dh, float scale) {
  const GuardedArena::Open open(arena_);
  check("attention_bias_bwd", "dout", dout);
  check("attention_bias_bwd", "qkv", qkv);
  check("attention_bias_bwd", "out", out);
  check("attention_bias_bwd", "lse", lse);
  check("attention_bias_bwd", "bias.table", bias.table);
  check("attention_bias_bwd", "bias.index", bias.index);
  check("attention_bias_bwd", "bias.ids", bias.ids);
  check("attention_bias_bwd", "dqkv", dqkv);
  check("attention_bias_bwd", "dtable", dtable);
  cpu_->attention_bias_bwd(dout, qkv, out, lse, bias, dqkv, dtable, B, N, H, Dh, scale);
}

void SimDevBackend::patch_im2col(const float* x, float* cols, int B, int C, int S, int p, int W) {
  const GuardedArena::Open open(arena_);
  check("patch_im2col", "x", x);
  check("patch_im2col", "cols", cols);
  cpu_->patch_im2col(x, cols, B, C, S, p, W);
}

void SimDevBackend::patch_col2im(const float* cols, float* x, int B, int C, int S, int p, int W) {
  const GuardedArena::Open open(arena_);
  check("patch_col2im", "cols", cols);
  check("patch_col2im", "x", x);
  cpu_->patch_col2im(cols, x, B, C, S, p, W);
}

void SimDevBackend::tokens_fwd(const float* extras, const float* patches, const float* pos,
                               float* seq, int B, int E, int L, int D) {
  const GuardedArena::Open open(arena_);
  check("tokens_fwd", "extras", extras);
  check("tokens_fwd", "patches", patches);
  check("tokens_fwd", "pos", pos);
  check("tokens_fwd", "seq", seq);
  cpu_->tokens_fwd(extras, patches, pos, seq, B, E, L, D);
}

void SimDevBackend::tokens_bwd(const float* dseq, float* dextras, float* dpatches, float* dpos,
                               int B, int E, int L, int D) {
  const GuardedArena::Open open(arena_);
  check("tokens_bwd", "dseq", dseq);
  check("tokens_bwd", "dextras", dextras);
  check("tokens_bwd", "dpatches", dpatches);
  check("tokens_bwd", "dpos", dpos);
  cpu_->tokens_bwd(dseq, dextras, dpatches, dpos, B, E, L, D);
}

void SimDevBackend::timestep_embedding(const float* t, float* out, int B, int D, int ldo) {
  const GuardedArena::Open open(arena_);
  check("timestep_embedding", "t", t);
  check("timestep_embedding", "out", out);
  cpu_->timestep_embedding(t, out, B, D, ldo);
}

void SimDevBackend::fit_time_shift(const float* t, float* out, int n, float s) {
  const GuardedArena::Open open(arena_);
  check("fit_time_shift", "t", t);
  check("fit_time_shift", "out", out);
  cpu_->fit_time_shift(t, out, n, s);
}

void SimDevBackend::embedding_fwd(const float* table, const int32_t* idx, float* out, int B, int D,
                                  int ldo) {
  const GuardedArena::Open open(arena_);
  check("embedding_fwd", "table", table);
  check("embedding_fwd", "idx", idx);
  check("embedding_fwd", "out", out);
  cpu_->embedding_fwd(table, idx, out, B, D, ldo);
}

void SimDevBackend::embedding_bwd(const float* dout, const int32_t* idx, float* dtable, int B,
                                  int D, int ldo) {
  const GuardedArena::Open open(arena_);
  check("embedding_bwd", "dout", dout);
  check("embedding_bwd", "idx", idx);
  check("embedding_bwd", "dtable", dtable);
  cpu_->embedding_bwd(dout, idx, dtable, B, D, ldo);
}

void SimDevBackend::unpatchify_fwd(const float* tok, float* img, int B, int E, int C, int S,
                                   int p) {
  const GuardedArena::Open open(arena_);
  check("unpatchify_fwd", "tok", tok);
  check("unpatchify_fwd", "img", img);
  cpu_->unpatchify_fwd(tok, img, B, E, C, S, p);
}

void SimDevBackend::unpatchify_bwd(const float* dimg, float* dtok, int B, int E, int C, int S,
                                   int p) {
  const GuardedArena::Open open(arena_);
  check("unpatchify_bwd", "dimg", dimg);
  check("unpatchify_bwd", "dtok", dtok);
  cpu_->unpatchify_bwd(dimg, dtok, B, E, C, S, p);
}

void SimDevBackend::conv3x3_fwd(const float* x, const float* w, const float* b, float* y, int B,
                                int Cin, int Cout, int H, int W) {
  const GuardedArena::Open open(arena_);
  check("conv3x3_fwd", "x", x);
  check("conv3x3_fwd", "w", w);
  check("conv3x3_fwd", "b", b);
  check("conv3x3_fwd", "y", y);
  cpu_->conv3x3_fwd(x, w, b, y, B, Cin, Cout, H, W);
}

void SimDevBackend::conv3x3_im2col(const float* x, float* cols, int B, int C, int H, int W,
                                   int stride) {
  const GuardedArena::Open open(arena_);
  check("conv3x3_im2col", "x", x);
  check("conv3x3_im2col", "cols", cols);
  cpu_->conv3x3_im2col(x, cols, B, C, H, W, stride);
}

void SimDevBackend::conv3x3_col2im(const float* cols, float* x, int B, int C, int H, int W,
                                   int stride) {
  const GuardedArena::Open open(arena_);
  check("conv3x3_col2im", "cols", cols);
  check("conv3x3_col2im", "x", x);
  cpu_->conv3x3_col2im(cols, x, B, C, H, W, stride);
}

void SimDevBackend::conv3x3_bwd(const float* dy, const float* x, const float* w, float* dx,
                                float* dw, float* db, int B, int Cin, int Cout, int H, int W) {
  const GuardedArena::Open open(arena_);
  check("conv3x3_bwd", "dy", dy);
  check("conv3x3_bwd", "x", x);
  check("conv3x3_bwd", "w", w);
  check("conv3x3_bwd", "dx", dx);
  check("conv3x3_bwd", "dw", dw);
  check("conv3x3_bwd", "db", db);
  cpu_->conv3x3_bwd(dy, x, w, dx, dw, db, B, Cin, Cout, H, W);
}

void SimDevBackend::conv2d(const Conv2dShape& s, const float* x, const float* w, const float* b,
                           float* y) {
  const GuardedArena::Open open(arena_);
  check("conv2d", "x", x);
  check("conv2d", "w", w);
  check("conv2d", "b", b);
  check("conv2d", "y", y);
  cpu_->conv2d(s, x, w, b, y);
}

void SimDevBackend::group_norm(const float* x, const float* w, const float* b, float* y, int B,
                               int C, int HW, int G, float eps, bool swish) {
  const GuardedArena::Open open(arena_);
  check("group_norm", "x", x);
  check("group_norm", "w", w);
  check("group_norm", "b", b);
  check("group_norm", "y", y);
  cpu_->group_norm(x, w, b, y, B, C, HW, G, eps, swish);
}

void SimDevBackend::upsample_nearest2x(const float* x, float* y, int N, int H, int W) {
  const GuardedArena::Open open(arena_);
  check("upsample_nearest2x", "x", x);
  check("upsample_nearest2x", "y", y);
  cpu_->upsample_nearest2x(x, y, N, H, W);
}

void SimDevBackend::spatial_attention(const float* q, const float* k, const float* v, float* out,
                                      int B, int C, int HW, float scale) {
  const GuardedArena::Open open(arena_);
  check("spatial_attention", "q", q);
  check("spatial_attention", "k", k);
  check("spatial_attention", "v", v);
  check("spatial_attention", "out", out);
  cpu_->spatial_attention(q, k, v, out, B, C, HW, scale);
}

void SimDevBackend::pool2d(const float* x, float* y, int B, int C, int H, int W, int k, int stride,
                           int pad, bool max, long x_stride, long y_stride) {
  const GuardedArena::Open open(arena_);
  check("pool2d", "x", x);
  check("pool2d", "y", y);
  cpu_->pool2d(x, y, B, C, H, W, k, stride, pad, max, x_stride, y_stride);
}

void SimDevBackend::global_avg_pool(const float* x, float* y, int N, int HW) {
  const GuardedArena::Open open(arena_);
  check("global_avg_pool", "x", x);
  check("global_avg_pool", "y", y);
  cpu_->global_avg_pool(x, y, N, HW);
}

void SimDevBackend::channel_bias_act(float* x, const float* bias, int B, int C, int HW, bool relu,
                                     long stride) {
  const GuardedArena::Open open(arena_);
  check("channel_bias_act", "x", x);
  check("channel_bias_act", "bias", bias);
  cpu_->channel_bias_act(x, bias, B, C, HW, relu, stride);
}

void SimDevBackend::resize_bilinear(const float* x, float* y, int planes, int H, int W, int oh,
                                    int ow, float scale, float shift) {
  const GuardedArena::Open open(arena_);
  check("resize_bilinear", "x", x);
  check("resize_bilinear", "y", y);
  cpu_->resize_bilinear(x, y, planes, H, W, oh, ow, scale, shift);
}

void SimDevBackend::causal_attention_fwd(const float* qkv, float* out, int B, int N, int H, int Dh,
                                         float scale) {
  const GuardedArena::Open open(arena_);
  check("causal_attention_fwd", "qkv", qkv);
  check("causal_attention_fwd", "out", out);
  cpu_->causal_attention_fwd(qkv, out, B, N, H, Dh, scale);
}

void SimDevBackend::adamw(float* p, const float* g, float* m, float* v, size_t n, float lr,
                          float beta1, float beta2, float eps, float weight_decay, long step) {
  const GuardedArena::Open open(arena_);
  check("adamw", "p", p);
  check("adamw", "g", g);
  check("adamw", "m", m);
  check("adamw", "v", v);
  cpu_->adamw(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, step);
}

void SimDevBackend::adan(float* p, const float* g, float* m, float* d, float* n, float* gp,
                         size_t count, const AdanHyper& h, long step) {
  const GuardedArena::Open open(arena_);
  check("adan", "p", p);
  check("adan", "g", g);
  check("adan", "m", m);
  check("adan", "d", d);
  check("adan", "n", n);
  check("adan", "gp", gp);
  cpu_->adan(p, g, m, d, n, gp, count, h, step);
}

void SimDevBackend::ema(float* e, const float* p, size_t n, float decay) {
  const GuardedArena::Open open(arena_);
  check("ema", "e", e);
  check("ema", "p", p);
  cpu_->ema(e, p, n, decay);
}

void SimDevBackend::adamw_ema(float* p, const float* g, float* m, float* v, float* e, size_t n,
                              float lr, float beta1, float beta2, float eps, float weight_decay,
                              long step, float ema_decay) {
  const GuardedArena::Open open(arena_);
  check("adamw_ema", "p", p);
  check("adamw_ema", "g", g);
  check("adamw_ema", "m", m);
  check("adamw_ema", "v", v);
  check("adamw_ema", "e", e);
  cpu_->adamw_ema(p, g, m, v, e, n, lr, beta1, beta2, eps, weight_decay, step, ema_decay);
}
}  // namespace uvit
