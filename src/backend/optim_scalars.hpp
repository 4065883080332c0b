// The per-step scalars of Backend::adamw and Backend::ema, prepared on the host the same way by
// every backend (src/backend/cpu/optim.cpp, src/backend/cuda/optim.cu) so their fp32 updates agree.
#pragma once

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
// 1 - decay, computed from the decimal literal the config gave (as PyTorch's double would be).
float ema_keep(float decay);

}  // namespace uvit
