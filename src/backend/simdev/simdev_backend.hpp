// SimDevBackend, the simulated device (docs/gpu.md, "The simulated device"): a test backend that
// computes with an inner CpuBackend of the same precision, bit for bit, but holds its memory in a
// GuardedArena that host code cannot read, and is not host_addressable(). So every branch that
// stages through host memory for a device takes its device path here, and a host access to device
// memory faults, where on a real GPU it would fault or read garbage. Every kernel also checks
// that its pointers are device memory (a host pointer passed to a kernel is an illegal address
// on a GPU).
#pragma once
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>

#include "backend/simdev/guarded_arena.hpp"
#include "uvit/backend.hpp"

namespace uvit {

// make_backend("cpu", precision) itself (backend.cpp), never the simulated device.
std::unique_ptr<Backend> make_cpu_backend_for(const std::string& precision);

class SimDevBackend final : public Backend {
 public:
  // precision as make_cpu_backend_for's; capacity: the device's bytes.
  SimDevBackend(const std::string& precision, size_t capacity);

  std::string name() const override { return "simdev"; }
  // Its arena is host memory, but the point of the simulated device is that host code does not
  // touch it (the arena faults outside backend calls).
  bool host_addressable() const override { return false; }
  std::string precision() const override;
  void synchronize() override;
  size_t peak_bytes() const override { return arena_.peak_bytes(); }
  void reset_peak_bytes() override { arena_.reset_peak_bytes(); }
  double peak_flops() const override;
  size_t act_bytes() const override;

  void* alloc_bytes(size_t n) override;
  void free_bytes(void* p) override;
  void upload(void* dst, const void* host, size_t bytes) override;
  void download(void* host, const void* src, size_t bytes) override;

  // The kernels (simdev_forward.cpp): checked, then run by the CPU inside an open arena.
  void copy(float* dst, const float* src, size_t n) override;
  void copy_2d(float* dst, long ld_dst, const float* src, long ld_src, long rows,
               long cols) override;
  void fill(float* dst, float v, size_t n) override;
  void axpy(float* y, const float* x, float a, size_t n) override;
  void scale(float* x, float a, size_t n) override;
  double sum_squares(const float* x, size_t n) override;
  void to_act(const float* src, float* dst_act, size_t n) override;
  void params_to_act(const float* src, float* dst_act, size_t n) override;
  void from_act(const float* src_act, float* dst, size_t n) override;
  void copy_act(float* dst, const float* src, size_t n) override;
  void zero_act(float* dst, size_t n) override;
  void axpy_act(float* y, const float* x, float a, size_t n) override;
  void move_rows(float* dst, const int32_t* dst_idx, const float* src, const int32_t* src_idx,
                 long n, long row_len, bool accumulate, bool act = true) override;
  void copy_3d(float* dst, long ld_dst, long bs_dst, const float* src, long ld_src, long bs_src,
               long blocks, long rows, long cols, bool act = true) override;
  void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
            const float* B, int ldb, float beta, float* C, int ldc) override;
  void add_bias(float* y, const float* b, int M, int N) override;
  void bias_grad_strided(const float* dy, long ld_dy, float* db, int M, int N) override;
  void gemm_wgrad(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C,
                  int ldc) override;
  void linear(const float* x, int ldx, const float* w, int ldw, const float* bias,
              const float* residual, float* y, int ldy, int M, int N, int K) override;
  void layernorm_fwd(const float* x, const float* w, const float* b, float* y, float* mean,
                     float* rstd, int M, int D, float eps) override;
  void layernorm_bwd(const float* dy, const float* x, const float* w, const float* mean,
                     const float* rstd, float* dx, float* dw, float* db, int M, int D) override;
  void gelu_fwd(const float* x, float* y, size_t n) override;
  void gelu_bwd(const float* dy, const float* x, float* dx, size_t n) override;
  void silu_fwd(const float* x, float* y, size_t n) override;
  void silu_bwd(const float* dy, const float* x, float* dx, size_t n) override;
  void gelu_tanh_fwd(const float* x, float* y, size_t n) override;
  void gelu_tanh_bwd(const float* dy, const float* x, float* dx, size_t n) override;
  void tanh_fwd(const float* x, float* y, size_t n) override;
  void tanh_bwd(const float* dy, const float* x, float* dx, size_t n) override;
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
  void copy_act_2d(float* dst, long ld_dst, const float* src, long ld_src, long rows,
                   long cols) override;
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
  void conv3x3_fwd(const float* x, const float* w, const float* b, float* y, int B, int Cin,
                   int Cout, int H, int W) override;
  void conv3x3_im2col(const float* x, float* cols, int B, int C, int H, int W, int stride) override;
  void conv3x3_col2im(const float* cols, float* x, int B, int C, int H, int W, int stride) override;
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
  // A kernel's entry: throws when one of its pointer arguments (name, value) is neither null nor
  // device memory, then opens the arena for the call.
  using Arg = std::pair<const char*, const void*>;
  simdev::GuardedArena::Open enter(const char* op, std::initializer_list<Arg> args) const;

  std::unique_ptr<Backend> cpu_;
  mutable simdev::GuardedArena arena_;
};

}  // namespace uvit
