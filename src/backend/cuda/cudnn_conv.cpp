// cuDNN's (legacy, still shipped in 9.x) convolution API: per geometry one plan (descriptors with
// the image strides, the algorithm and its math type), cached; a grow-only workspace. cuDNN's
// default math lets fp32 convolutions use TF32 tensor cores on Ampere and later, as PyTorch does
// with allow_tf32 (its default for convolutions).
// The algorithm (UVIT_CUDNN_ALGO): "heuristic" (default), the v7 heuristics' first usable choice;
// "precomp", IMPLICIT_PRECOMP_GEMM on tensor cores where the heuristics offer it (the implicit-GEMM
// kernels PyTorch's cuDNN runs for these convolutions); "find", the fastest tensor-core algorithm
// measured on the real buffers (cudnnFindConvolutionForwardAlgorithmEx, run twice: the first run
// loads the kernels, whose load time would otherwise decide). docs/gpu.md has the measurements.
#include "backend/cuda/cudnn_conv.hpp"

#include <cstdio>

#ifdef UVIT_HAVE_CUDNN
#include <cudnn.h>

#include <cstdlib>
#include <map>
#include <string>
#include <tuple>

#include "backend/cuda/cuda_common.hpp"
#include "backend/cuda/cudnn_handle.hpp"
#include "uvit/error.hpp"
#endif

namespace uvit::cuda {

#ifdef UVIT_HAVE_CUDNN
namespace {

constexpr size_t kMaxWorkspace = size_t(1) << 30;  // algorithms needing more are skipped

enum class Algo { kHeuristic, kPrecomp, kFind };

Algo algo_from_env() {
  const char* e = std::getenv("UVIT_CUDNN_ALGO");
  const std::string v = e ? e : "";
  if (v.empty() || v == "heuristic") return Algo::kHeuristic;
  if (v == "precomp") return Algo::kPrecomp;
  if (v == "find") return Algo::kFind;
  fail("UVIT_CUDNN_ALGO: expected heuristic, precomp or find, got '", v, "'");
}

void check_dnn(cudnnStatus_t s, const char* what) {
  if (s != CUDNN_STATUS_SUCCESS) fail("cudnn: ", what, " failed: ", cudnnGetErrorString(s));
}

// B, Cin, H, W, Cout, kh, kw, sh, sw, pad h, pad w, x image stride, y image stride
using Key = std::tuple<int, int, int, int, int, int, int, int, int, int, int, long, long>;

struct Plan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnConvolutionFwdAlgo_t algo{};
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  size_t ws = 0;
  bool ok = false;  // an algorithm was found (and has not been turned down at run time)

  void destroy() {
    if (x) cudnnDestroyTensorDescriptor(x);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
    x = y = nullptr;
    w = nullptr;
    conv = nullptr;
  }
};

class DnnConv final : public CudnnConv {
 public:
  explicit DnnConv(cudnnHandle_t h) : h_(h), algo_(algo_from_env()) {}
  ~DnnConv() override {
    for (auto& kv : plans_) kv.second.destroy();
    cudnnDestroy(h_);
  }

  size_t workspace_bytes() const override { return ws_.bytes(); }

  bool forward(const Conv2dShape& s, const float* x, const float* w, float* y) override {
    if (s.pt != s.pb || s.pl != s.pr) return false;  // the legacy API pads symmetrically
    const Key key{s.B,  s.Cin, s.H,  s.W,  s.Cout,        s.kh,          s.kw,
                  s.sh, s.sw,  s.pt, s.pl, s.in_stride(), s.out_stride()};
    auto it = plans_.find(key);
    if (it == plans_.end()) it = plans_.emplace(key, make_plan(s, x, w, y)).first;
    Plan& p = it->second;
    if (!p.ok) return false;
    ws_.reserve(p.ws);
    const float one = 1.f, zero = 0.f;
    const cudnnStatus_t st = cudnnConvolutionForward(h_, &one, p.x, x, p.w, w, p.conv, p.algo,
                                                     ws_.get(), p.ws, &zero, p.y, y);
    if (st == CUDNN_STATUS_NOT_SUPPORTED) {
      p.ok = false;
      return false;
    }
    check_dnn(st, "cudnnConvolutionForward");
    return true;
  }

 private:
  // Takes the first usable entry of perf (best first) that `want` accepts: success, its math type
  // accepted and its real workspace need (the estimate can differ) within the cap.
  template <class Want>
  void choose(Plan& p, const cudnnConvolutionFwdAlgoPerf_t* perf, int n, Want want) {
    for (int i = 0; i < n && !p.ok; ++i) {
      if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > kMaxWorkspace ||
          !want(perf[i]))
        continue;
      size_t ws = 0;
      if (cudnnSetConvolutionMathType(p.conv, perf[i].mathType) != CUDNN_STATUS_SUCCESS ||
          cudnnGetConvolutionForwardWorkspaceSize(h_, p.x, p.w, p.conv, p.y, perf[i].algo, &ws) !=
              CUDNN_STATUS_SUCCESS ||
          ws > kMaxWorkspace)
        continue;
      p.algo = perf[i].algo;
      p.math = perf[i].mathType;
      p.ws = ws;
      p.ok = true;
    }
  }

  Plan make_plan(const Conv2dShape& s, const float* x, const float* w, float* y) {
    Plan p;
    try {
      const int Ho = s.out_h(), Wo = s.out_w();
      check_dnn(cudnnCreateTensorDescriptor(&p.x), "cudnnCreateTensorDescriptor");
      check_dnn(cudnnCreateTensorDescriptor(&p.y), "cudnnCreateTensorDescriptor");
      check_dnn(cudnnCreateFilterDescriptor(&p.w), "cudnnCreateFilterDescriptor");
      check_dnn(cudnnCreateConvolutionDescriptor(&p.conv), "cudnnCreateConvolutionDescriptor");
      // NCHW with the image stride of a channel slice of a wider tensor.
      check_dnn(cudnnSetTensor4dDescriptorEx(p.x, CUDNN_DATA_FLOAT, s.B, s.Cin, s.H, s.W,
                                             int(s.in_stride()), s.H * s.W, s.W, 1),
                "cudnnSetTensor4dDescriptorEx(x)");
      check_dnn(cudnnSetTensor4dDescriptorEx(p.y, CUDNN_DATA_FLOAT, s.B, s.Cout, Ho, Wo,
                                             int(s.out_stride()), Ho * Wo, Wo, 1),
                "cudnnSetTensor4dDescriptorEx(y)");
      check_dnn(cudnnSetFilter4dDescriptor(p.w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, s.Cout, s.Cin,
                                           s.kh, s.kw),
                "cudnnSetFilter4dDescriptor");
      check_dnn(cudnnSetConvolution2dDescriptor(p.conv, s.pt, s.pl, s.sh, s.sw, 1, 1,
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                "cudnnSetConvolution2dDescriptor");
      check_dnn(cudnnSetConvolutionMathType(p.conv, CUDNN_DEFAULT_MATH),
                "cudnnSetConvolutionMathType");
      cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
      int n = 0;
      const auto tensor_op = [](const cudnnConvolutionFwdAlgoPerf_t& r) {
        return r.mathType != CUDNN_FMA_MATH;
      };
      if (algo_ == Algo::kFind) {
        // On the real buffers (y is overwritten; the caller computes it right after).
        ws_.reserve(kMaxWorkspace);
        cudnnStatus_t st = CUDNN_STATUS_SUCCESS;
        for (int run = 0; run < 2 && st == CUDNN_STATUS_SUCCESS; ++run)
          st = cudnnFindConvolutionForwardAlgorithmEx(h_, p.x, x, p.w, w, p.conv, p.y, y,
                                                      CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf,
                                                      ws_.get(), ws_.bytes());
        if (st == CUDNN_STATUS_SUCCESS) choose(p, perf, n, tensor_op);
        check_dnn(cudnnSetConvolutionMathType(p.conv, p.ok ? p.math : CUDNN_DEFAULT_MATH),
                  "cudnnSetConvolutionMathType");
      }
      if (!p.ok) {
        check_dnn(cudnnGetConvolutionForwardAlgorithm_v7(
                      h_, p.x, p.w, p.conv, p.y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf),
                  "cudnnGetConvolutionForwardAlgorithm_v7");
        if (algo_ == Algo::kPrecomp)
          choose(p, perf, n, [&](const cudnnConvolutionFwdAlgoPerf_t& r) {
            return r.algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM && tensor_op(r);
          });
        choose(p, perf, n, [](const cudnnConvolutionFwdAlgoPerf_t&) { return true; });
      }
    } catch (...) {
      p.destroy();
      throw;
    }
    return p;
  }

  cudnnHandle_t h_;
  Algo algo_;
  GrowBuffer ws_{"cuDNN convolution workspace"};
  std::map<Key, Plan> plans_;
};

}  // namespace

std::unique_ptr<CudnnConv> make_cudnn_conv(cudaStream_t stream) {
  cudnnHandle_t h = create_cudnn_handle(stream, "tf32 convolutions use im2col + GEMM");
  if (!h) return nullptr;
  return std::make_unique<DnnConv>(h);
}

#else

std::unique_ptr<CudnnConv> make_cudnn_conv(cudaStream_t) { return nullptr; }

#endif

}  // namespace uvit::cuda
