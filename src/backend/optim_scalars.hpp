// The per-step scalars of Backend::adamw, Backend::adan and Backend::ema, prepared on the host the
// same way by every backend (src/backend/cpu/optim.cpp, src/backend/cuda/optim.cu) so their fp32
// updates agree.
#pragma once
#include "uvit/backend.hpp"

namespace uvit {

struct AdamScalars {
  float decay;  // 1 - lr * wd
  float beta1, beta2, one_m_b1, one_m_b2;
  float bc2_sqrt;  // sqrt(1 - beta2^step)
  float neg_step;  // -lr / (1 - beta1^step)
  float eps;
};

// As torch.optim.AdamW (PyTorch 1.13): scalars and bias corrections in double. step counts from 1.
AdamScalars adam_scalars(float lr, float beta1, float beta2, float eps, float weight_decay,
                         long step);
struct AdanScalars {
  float beta1, beta2, beta3, one_m_b1, one_m_b2, one_m_b3;
  float bc3_sqrt;       // sqrt(1 - beta3^step)
  float neg_step;       // -lr / (1 - beta1^step)
  float neg_step_diff;  // -lr * beta2 / (1 - beta2^step)
  float decay;          // 1 - lr * wd (no_prox)
  float div;            // 1 + lr * wd (proximal form, the default)
  float eps;
  int no_prox;  // 1: p *= decay before the update; 0: p /= div after it
  int first;    // step 1: the gradient difference is zero (sail-sg/Adan sets pre_grad = g)
};

// As sail-sg/Adan adan.py (_single_tensor_adan): scalars and bias corrections in double. step
// counts from 1.
AdanScalars adan_scalars(const AdanHyper& h, long step);

// 1 - decay, computed from the decimal literal the config gave (as PyTorch's double would be).
float ema_keep(float decay);

}  // namespace uvit
