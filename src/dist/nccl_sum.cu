// The ordered sum of the NCCL reduction: out[e] = ((p_0[e] + p_1[e]) + p_2[e]) + ... , one thread
// per element, so the association is the logical-rank order whatever NCCL's algorithm.
#include <cuda_runtime.h>

#include <cstddef>

namespace uvit {

namespace {
__global__ void ordered_sum_kernel(const float* __restrict__ parts, int count, size_t n,
                                   float* __restrict__ out) {
  for (size_t e = size_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += size_t(gridDim.x) * blockDim.x) {
    float s = parts[e];
    for (int i = 1; i < count; ++i) s = __fadd_rn(s, parts[size_t(i) * n + e]);  // no FMA contraction
    out[e] = s;
  }
}
}  // namespace

void cuda_ordered_sum(const float* parts, int count, size_t n, float* out, cudaStream_t stream) {
  if (n == 0) return;
  const int threads = 256;
  const size_t want = (n + threads - 1) / threads;
  const int blocks = int(want < 65535 ? want : 65535);
  ordered_sum_kernel<<<blocks, threads, 0, stream>>>(parts, count, n, out);
}

}  // namespace uvit
