// cuDNN convolutions for the CUDA backend's tf32 precision (what PyTorch runs for an fp32
// nn.Conv2d on a GPU: cuDNN with TF32 tensor-op math, the algorithm from cuDNN's heuristics). The
// fp32 precision keeps im2col + SGEMM: exact to the CPU, no TF32, no Winograd/FFT rounding.
// Built only when CMake finds cuDNN (UVIT_HAVE_CUDNN); without it, or when cuDNN turns a shape
// down, the backend's im2col path runs instead.
#pragma once
#include <cuda_runtime.h>

#include <memory>

#include "uvit/backend.hpp"

namespace uvit::cuda {

class CudnnConv {
 public:
  virtual ~CudnnConv() = default;
  // y = conv(x, w) (no bias; image strides s.in_stride()/s.out_stride()) on TF32 tensor cores.
  // false when cuDNN does not take this geometry (asymmetric padding, no algorithm within the
  // workspace cap, NOT_SUPPORTED): the caller computes it another way. Other errors throw.
  virtual bool forward(const Conv2dShape& s, const float* x, const float* w, float* y) = 0;
  // Device bytes held as workspace.
  virtual size_t workspace_bytes() const = 0;
};

// nullptr when this build has no cuDNN or the library cannot be initialised here (said once on
// stderr: the slower im2col path then runs).
std::unique_ptr<CudnnConv> make_cudnn_conv(cudaStream_t stream);

}  // namespace uvit::cuda
