// Attention in float64, forward (output, logsumexp) and backward, the reference the attention
// kernels are checked against: qkv [B, N, 3, H, Dh], out and dout [B, N, H * Dh], lse [B, H, N].
// Optional: MDT's relative position bias (BiasRef), and per-sample lengths (FiTv2's packed
// batches): sample b's first lens[b] rows attend among themselves alone, the rest are zero.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace uvit_test {

struct AttnRef {
  std::vector<double> out, lse, dqkv, dtable;
};

// MDT's relative position bias (docs/mdt.md): bias[b, h, i, j] = table[index[pi, pj] * H + h],
// pi = ids[b, i] (i itself without ids, over the full grid of Lf tokens).
struct BiasRef {
  std::vector<double> table;
  std::vector<int32_t> index, ids;
  int Lf = 0;
  size_t slot(int b, int i, int j, int h, int N, int H) const {
    const size_t pi = ids.empty() ? i : ids[size_t(b) * N + i];
    const size_t pj = ids.empty() ? j : ids[size_t(b) * N + j];
    return size_t(index[pi * Lf + pj]) * H + h;
  }
};

// dout empty: the forward alone. lens: nullptr, or B lengths <= N.
inline AttnRef attn_ref(const std::vector<double>& qkv, const std::vector<double>& dout, int B,
                        int N, int H, int Dh, double scale, const BiasRef* bias = nullptr,
                        const std::vector<int32_t>* lens = nullptr) {
  using VecD = std::vector<double>;
  const int D = H * Dh;
  AttnRef r{VecD(size_t(B) * N * D), VecD(size_t(B) * H * N), VecD(qkv.size()),
            VecD(bias ? bias->table.size() : 0)};
  auto at = [&](int b, int n, int k, int h, int d) {
    return qkv[(size_t(b) * N + n) * 3 * D + k * D + h * Dh + d];
  };
  auto dat = [&](int b, int n, int k, int h, int d) -> double& {
    return r.dqkv[(size_t(b) * N + n) * 3 * D + k * D + h * Dh + d];
  };
  VecD P(size_t(N) * N), dP(size_t(N) * N);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      const int n = lens ? (*lens)[size_t(b)] : N;
      for (int i = 0; i < n; ++i) {
        double mx = -1e300;
        for (int j = 0; j < n; ++j) {
          double s = 0;
          for (int d = 0; d < Dh; ++d) s += at(b, i, 0, h, d) * at(b, j, 1, h, d);
          s = s * scale + (bias ? bias->table[bias->slot(b, i, j, h, N, H)] : 0.0);
          P[i * n + j] = s;
          mx = std::max(mx, s);
        }
        double sum = 0;
        for (int j = 0; j < n; ++j) sum += std::exp(P[i * n + j] - mx);
        for (int j = 0; j < n; ++j) P[i * n + j] = std::exp(P[i * n + j] - mx) / sum;
        r.lse[(size_t(b) * H + h) * N + i] = mx + std::log(sum);
        for (int d = 0; d < Dh; ++d) {
          double o = 0;
          for (int j = 0; j < n; ++j) o += P[i * n + j] * at(b, j, 2, h, d);
          r.out[(size_t(b) * N + i) * D + h * Dh + d] = o;
        }
      }
      if (dout.empty()) continue;
      auto dO = [&](int i, int d) { return dout[(size_t(b) * N + i) * D + h * Dh + d]; };
      for (int i = 0; i < n; ++i) {
        double rs = 0;
        for (int j = 0; j < n; ++j) {
          double s = 0;
          for (int d = 0; d < Dh; ++d) s += dO(i, d) * at(b, j, 2, h, d);
          dP[i * n + j] = s;
          rs += s * P[i * n + j];
        }
        for (int j = 0; j < n; ++j) {
          dP[i * n + j] = P[i * n + j] * (dP[i * n + j] - rs);  // dS
          if (bias) r.dtable[bias->slot(b, i, j, h, N, H)] += dP[i * n + j];
        }
      }
      for (int i = 0; i < n; ++i)
        for (int d = 0; d < Dh; ++d) {
          double dq = 0, dk = 0, dv = 0;
          for (int j = 0; j < n; ++j) {
            dq += dP[i * n + j] * at(b, j, 1, h, d);
            dk += dP[j * n + i] * at(b, j, 0, h, d);
            dv += P[j * n + i] * dO(j, d);
          }
          dat(b, i, 0, h, d) = scale * dq;
          dat(b, i, 1, h, d) = scale * dk;
          dat(b, i, 2, h, d) = dv;
        }
    }
  return r;
}

}  // namespace uvit_test
