// One element of the Adan update, shared by the CPU loop (src/backend/cpu/optim.cpp) and the CUDA
// kernel (src/backend/cuda/optim.cu) so both round alike. The operations follow sail-sg/Adan
// adan.py's _single_tensor_adan in fp32 (docs/mdt_diffusion.md), which keeps -g_prev and adds g to
// it: (-gp) + g rounds as g - gp.
#pragma once
#include <cmath>

#include "backend/optim_scalars.hpp"

#ifdef __CUDACC__
#define UVIT_ADAN_HD __host__ __device__ __forceinline__
#else
#define UVIT_ADAN_HD inline
#endif

namespace uvit {

UVIT_ADAN_HD void adan_one(float& p, float g, float& m, float& d, float& n, float& gp,
                           const AdanScalars& s) {
  // The FMAs spelled out, as GCC had contracted the CPU loop (the CPU's file is compiled without
  // contraction; nvcc contracts the same products by default).
  const float u = s.first ? 0.f : g - gp;  // the gradient difference
  const float mi = fmaf(m, s.beta1, g * s.one_m_b1);
  const float di = fmaf(d, s.beta2, u * s.one_m_b2);
  const float w = fmaf(u, s.beta2, g);
  const float ni = fmaf(n, s.beta3, s.one_m_b3 * w * w);
  const float den = sqrtf(ni) / s.bc3_sqrt + s.eps;
  const float step = s.neg_step * mi / den;
  float pi = s.no_prox ? fmaf(p, s.decay, step) : p + step;
  pi = pi + s.neg_step_diff * di / den;
  p = s.no_prox ? pi : pi / s.div;
  m = mi;
  d = di;
  n = ni;
  gp = g;
}

}  // namespace uvit
