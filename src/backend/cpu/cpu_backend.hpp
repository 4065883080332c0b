// CpuBackend: the host implementation of uvit::Backend (OpenMP over the available cores, oneDNN for
// GEMM). Methods are defined in topic files (gemm.cpp, layernorm.cpp, attention.cpp, ...).
// Activations ("act") are fp32, or bf16 in the bf16 mode (docs/cpu_bf16.md; act.hpp).
#pragma once
#include "uvit/backend.hpp"

namespace uvit {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(bool bf16 = false) : bf16_(bf16) {}
  std::string name() const override { return "cpu"; }
  bool host_addressable() const override { return true; }
  std::string precision() const override { return bf16_ ? "bf16" : "fp32"; }

  void* alloc_bytes(size_t n) override;
  void free_bytes(void* p) override;
  static size_t live_bytes();  // of all CpuBackends together, checked against process_mem_limit()
  void upload(void* dst, const void* host, size_t bytes) override;
  void download(void* host, const void* src, size_t bytes) override;
  void copy(float* dst, const float* src, size_t n) override;
  void fill(float* dst, float v, size_t n) override;
  void axpy(float* y, const float* x, float a, size_t n) override;
  void scale(float* x, float a, size_t n) override;
  double sum_squares(const float* x, size_t n) override;

  size_t act_bytes() const override { return bf16_ ? 2 : 4; }
  void to_act(const float* src, float* dst_act, size_t n) override;
  void params_to_act(const float* src, float* dst_act, size_t n) override;
  void from_act(const float* src_act, float* dst, size_t n) override;
  void copy_act(float* dst, const float* src, size_t n) override;
  void zero_act(float* dst, size_t n) override;
  void axpy_act(float* y, const float* x, float a, size_t n) override;
  void move_rows(float* dst, const int32_t* dst_idx, const float* src, const int32_t* src_idx,
                 long n, long row_len, bool accumulate, bool act = true) override;  // move_rows.cpp
  void copy_3d(float* dst, long ld_dst, long bs_dst, const float* src, long ld_src, long bs_src,
               long blocks, long rows, long cols, bool act = true) override;  // copy_3d.cpp
  void copy_act_2d(float* dst, long ld_dst, const float* src, long ld_src, long rows,
                   long cols) override;

  void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
            const float* B, int ldb, float beta, float* C, int ldc) override;
  void add_bias(float* y, const float* b, int M, int N) override;
  void linear(const float* x, int ldx, const float* w, int ldw, const float* bias,
              const float* residual, float* y, int ldy, int M, int N, int K) override;  // gemm.cpp
  void bias_grad_strided(const float* dy, long ld_dy, float* db, int M, int N) override;
  void gemm_wgrad(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C,
                  int ldc) override;

  void layernorm_fwd(const float* x, const float* w, const float* b, float* y, float* mean,
                     float* rstd, int M, int D, float eps) override;
  void layernorm_bwd(const float* dy, const float* x, const float* w, const float* mean,
                     const float* rstd, float* dx, float* dw, float* db, int M, int D) override;
  void gelu_fwd(const float* x, float* y, size_t n) override;
  void gelu_bwd(const float* dy, const float* x, float* dx, size_t n) override;
  void silu_fwd(const float* x, float* y, size_t n) override;
  void silu_bwd(const float* dy, const float* x, float* dx, size_t n) override;
  void tanh_fwd(const float* x, float* y, size_t n) override;
  void tanh_bwd(const float* dy, const float* x, float* dx, size_t n) override;
  void gelu_tanh_fwd(const float* x, float* y, size_t n) override;
  void gelu_tanh_bwd(const float* dy, const float* x, float* dx, size_t n) override;
  void modulate_fwd(const float* x, const float* shift, const float* scale, int ldm, float* y,
                    int B, int N, int D) override;
  void modulate_bwd(const float* dy, const float* x, const float* scale, int ldm, float* dx,
                    float* dshift, float* dscale, int B, int N, int D) override;
  void gate_fwd(const float* x, const float* y, const float* gate, int ldm, float* out, int B,
                int N, int D) override;
  void gate_bwd(const float* dout, const float* y, const float* gate, int ldm, float* dy,
                float* dgate, int B, int N, int D) override;
  void rmsnorm_fwd(const float* x, const float* w, float* y, float* rstd, int M, int G, int D,
                   int ld, float eps) override;
  void rmsnorm_bwd(const float* dy, const float* x, const float* w, const float* rstd, float* dx,
                   float* dw, int M, int G, int D, int ld, bool accumulate) override;
  void swiglu_fwd(const float* x12, float* y, int M, int H) override;
  void swiglu_bwd(const float* dy, int ldy, const float* x12, float* dx12, int M, int H) override;
  void rope(float* x, const float* cos, const float* sin, int B, int N, int G, int Dh, int ld,
            bool inverse, int sec = 2) override;

  void attention_fwd(const float* qkv, float* out, float* lse, int B, int N, int H, int Dh,
                     float scale) override;
  void attention_bwd(const float* dout, const float* qkv, const float* out, const float* lse,
                     float* dqkv, int B, int N, int H, int Dh, float scale) override;
  void attention_varlen_fwd(const float* qkv, const int32_t* lens, float* out, float* lse, int B,
                            int N, int H, int Dh, float scale) override;
  void attention_varlen_bwd(const float* dout, const float* qkv, const float* out, const float* lse,
                            const int32_t* lens, float* dqkv, int B, int N, int H, int Dh,
                            float scale) override;
  void attention_bias_fwd(const float* qkv, const AttnBias& bias, float* out, float* lse, int B,
                          int N, int H, int Dh, float scale) override;
  void attention_bias_bwd(const float* dout, const float* qkv, const float* out, const float* lse,
                          const AttnBias& bias, float* dqkv, float* dtable, int B, int N, int H,
                          int Dh, float scale) override;

  void patch_im2col(const float* x, float* cols, int B, int C, int S, int p, int W = 0) override;
  void patch_col2im(const float* cols, float* x, int B, int C, int S, int p, int W = 0) override;
  void tokens_fwd(const float* extras, const float* patches, const float* pos, float* seq, int B,
                  int E, int L, int D) override;
  void tokens_bwd(const float* dseq, float* dextras, float* dpatches, float* dpos, int B, int E,
                  int L, int D) override;
  void timestep_embedding(const float* t, float* out, int B, int D, int ldo) override;
  void fit_time_shift(const float* t, float* out, int n, float s) override;
  void embedding_fwd(const float* table, const int32_t* idx, float* out, int B, int D,
                     int ldo) override;
  void embedding_bwd(const float* dout, const int32_t* idx, float* dtable, int B, int D,
                     int ldo) override;
  void unpatchify_fwd(const float* tok, float* img, int B, int E, int C, int S, int p) override;
  void unpatchify_bwd(const float* dimg, float* dtok, int B, int E, int C, int S, int p) override;
  void conv3x3_im2col(const float* x, float* cols, int B, int C, int H, int W, int stride) override;
  void conv3x3_col2im(const float* cols, float* x, int B, int C, int H, int W, int stride) override;
  void conv3x3_fwd(const float* x, const float* w, const float* b, float* y, int B, int Cin,
                   int Cout, int H, int W) override;
  void conv3x3_bwd(const float* dy, const float* x, const float* w, float* dx, float* dw, float* db,
                   int B, int Cin, int Cout, int H, int W) override;

  void conv2d(const Conv2dShape& s, const float* x, const float* w, const float* b,
              float* y) override;
  void group_norm(const float* x, const float* w, const float* b, float* y, int B, int C, int HW,
                  int G, float eps, bool swish) override;
  void upsample_nearest2x(const float* x, float* y, int N, int H, int W) override;
  void spatial_attention(const float* q, const float* k, const float* v, float* out, int B, int C,
                         int HW, float scale) override;
  void pool2d(const float* x, float* y, int B, int C, int H, int W, int k, int stride, int pad,
              bool max, long x_stride = 0, long y_stride = 0) override;
  void global_avg_pool(const float* x, float* y, int N, int HW) override;
  void channel_bias_act(float* x, const float* bias, int B, int C, int HW, bool relu,
                        long stride = 0) override;
  void resize_bilinear(const float* x, float* y, int planes, int H, int W, int oh, int ow,
                       float scale = 1.f, float shift = 0.f, bool tf1 = false) override;
  void causal_attention_fwd(const float* qkv, float* out, int B, int N, int H, int Dh,
                            float scale) override;

  void adamw(float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1,
             float beta2, float eps, float weight_decay, long step) override;
  void adan(float* p, const float* g, float* m, float* d, float* n, float* gp, size_t count,
            const AdanHyper& h, long step) override;
  void ema(float* e, const float* p, size_t n, float decay) override;
  void adamw_ema(float* p, const float* g, float* m, float* v, float* e, size_t n, float lr,
                 float beta1, float beta2, float eps, float weight_decay, long step,
                 float ema_decay) override;

 private:
  void require_fp32(const char* op) const;  // the encoders' kernels are fp32 only (convnet.cpp)

  bool bf16_;
};

// gemm.cpp's kept blocked weights (docs/kernels.md, "Kept blocked weights"): the act copy of
// parameters at p (fp32: the parameters), `bytes` long, was (re)written, or (bytes == 0) is being
// freed; its blocked copies are dropped. The bytes those copies hold now. Whether the bf16-C
// products take B blocked at all (oneDNN runs AMX here; elsewhere a bf16 B stays plain and is not
// kept; an fp32 B is reordered, and kept, on every CPU).
void gemm_weights_written(const void* p, size_t bytes);
size_t gemm_kept_weight_bytes();
// The most they may hold together: UVIT_KEPT_WEIGHTS_MB (MiB; 0 keeps nothing), else an eighth of
// the memory this process can have (docs/memory.md, "The limit"), so DiT-XL/2's fp32 weights
// (2.7 GB) are kept whole from 22 GB on; past it (or past 7/8 of that memory with the live
// buffers) the rest are reordered per call. Read once; a bad value is refused (the CPU backends
// read it when made).
size_t gemm_kept_budget();
bool gemm_blocks_weights();

// Single-threaded row-major GEMM for use inside OpenMP parallel regions (attention); same
// conventions as Backend::gemm.
void gemm_serial(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                 int lda, const float* B, int ldb, float beta, float* C, int ldc);
// The same with bf16 A and B (act.hpp's cpu::bf16) and fp32 C, fp32 accumulation.
void gemm_serial_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const void* A,
                      int lda, const void* B, int ldb, float beta, float* C, int ldc);

// CpuBackend::gemm_wgrad's fixed decomposition of C[M,N] += A^T B over K rows, a function of the
// shape alone (so of no thread count; docs/kernels.md, "Weight gradients in fixed tasks"). Where
// M and N both exceed kWgradTile (`panels`): tiles of kWgradPanelM x kWgradTile, no chunks, K
// walked in steps of `step` rows (what kWgradPackBytes of fp32 panels of A and B hold, whole
// 256-row blocks, at least kWgradRows), each step's A and B packed once into column panels.
// Otherwise: tiles of kWgradTile x kWgradTile, K cut into `chunks` chunks of `rows` rows (the last
// shorter), about kWgradTasks tasks where the rows allow, no chunk under kWgradRows rows unless K
// is; a tile narrower than its operands copies kWgradCopyRows rows of them at a time (gemm.cpp).
inline constexpr int kWgradTile = 512, kWgradPanelM = 128, kWgradTasks = 16, kWgradRows = 1024,
                     kWgradCopyRows = 4096;
inline constexpr long kWgradPackBytes = 32l << 20;
struct WgradSplit {
  bool panels;
  int tile_m, tile_n, tiles_m, tiles_n, chunks, rows, step;
};
WgradSplit wgrad_split(int M, int N, int K);

}  // namespace uvit
