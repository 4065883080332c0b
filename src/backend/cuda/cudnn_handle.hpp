// A cuDNN handle bound to a stream, for the backend's cuDNN users (cudnn_conv.cpp,
// attention_cudnn.cpp). Include only where cudnn.h is available (UVIT_HAVE_CUDNN).
#pragma once
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cstdio>

namespace uvit::cuda {

// nullptr when cuDNN cannot be initialised here (no usable library or device); then one line on
// stderr gives cuDNN's reason and `instead`, what runs in its place.
inline cudnnHandle_t create_cudnn_handle(cudaStream_t stream, const char* instead) {
  cudnnHandle_t h = nullptr;
  cudnnStatus_t s = cudnnCreate(&h);
  if (s == CUDNN_STATUS_SUCCESS) s = cudnnSetStream(h, stream);
  if (s == CUDNN_STATUS_SUCCESS) return h;
  if (h) cudnnDestroy(h);
  std::fprintf(stderr, "uvit cuda: cuDNN unavailable (%s); %s\n", cudnnGetErrorString(s), instead);
  return nullptr;
}

}  // namespace uvit::cuda
