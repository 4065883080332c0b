// The ADM evaluator's Inception Score and precision/recall (openai/guided-diffusion
// evaluations/evaluator.py; the facts and where they differ from uvit's own metrics are in
// docs/evaluation.md "The ADM evaluator").
#include <algorithm>
#include <cmath>
#include <vector>

#include "eval/lapack.hpp"
#include "uvit/array.hpp"
#include "uvit/error.hpp"
#include "uvit/fid.hpp"

namespace uvit {

double inception_score_adm(const float* logits, long n, int classes, long split_size) {
  UVIT_CHECK(n >= 1 && split_size >= 1, "inception score: needs images (got ", n, ")");
  double sum = 0;
  long splits = 0;
  std::vector<double> lp(size_t(std::min(n, split_size)) * classes), q(classes);
  for (long a = 0; a < n; a += split_size, ++splits) {
    const long b = std::min(n, a + split_size), m = b - a;
    // log p(y|x) by a stable log-softmax; q = log of the split's mean p(y|x).
    std::fill(q.begin(), q.end(), 0.0);
    for (long i = 0; i < m; ++i) {
      const float* l = logits + (a + i) * classes;
      double mx = l[0], s = 0;
      for (int k = 1; k < classes; ++k) mx = std::max(mx, double(l[k]));
      for (int k = 0; k < classes; ++k) s += std::exp(double(l[k]) - mx);
      const double ls = std::log(s);
      for (int k = 0; k < classes; ++k) {
        lp[i * classes + k] = double(l[k]) - mx - ls;
        q[k] += std::exp(lp[i * classes + k]);
      }
    }
    for (double& v : q) v = std::log(v / double(m));
    double kl = 0;
    for (long i = 0; i < m; ++i)
      for (int k = 0; k < classes; ++k)
        kl += std::exp(lp[i * classes + k]) * (lp[i * classes + k] - q[k]);
    sum += std::exp(kl / double(m));
  }
  return sum / double(splits);
}

namespace {

float f16(float x) { return half_to_float(float_to_half(x)); }

// The evaluator's DistanceBlock: D[i, j] = max(|u_i|^2 - 2 u_i.v_j + |v_j|^2, 0) for a block of
// rows u (nu of them) and columns v (nv). First with fp16 inputs and every op rounded to fp16
// (the products accumulate in fp32, as cuBLAS does for TensorFlow's fp16 matmul); if any value of
// the block is not finite, the whole block again in fp32.
void distance_block(const float* u, long nu, const float* v, long nv, int d, float* D) {
  std::vector<float> uh(size_t(nu) * d), vh(size_t(nv) * d), nu2(nu), nv2(nv);
  for (size_t i = 0; i < uh.size(); ++i) uh[i] = f16(u[i]);
  for (size_t i = 0; i < vh.size(); ++i) vh[i] = f16(v[i]);
  // Norms: tf.square rounds each square to fp16, reduce_sum accumulates in fp32 and rounds.
  auto norms = [d](const std::vector<float>& x, long n, std::vector<float>& out, bool half) {
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; ++i) {
      double s = 0;
      for (int j = 0; j < d; ++j) {
        const float sq = x[size_t(i) * d + j] * x[size_t(i) * d + j];
        s += half ? f16(sq) : sq;
      }
      out[i] = half ? f16(float(s)) : float(s);
    }
  };
  norms(uh, nu, nu2, true);
  norms(vh, nv, nv2, true);
  cblas_sgemm(blas::RowMajor, blas::NoTrans, blas::Trans, int(nu), int(nv), d, 1.0f, uh.data(), d,
              vh.data(), d, 0.0f, D, int(nv));
  bool finite = true;
#pragma omp parallel for schedule(static) reduction(&& : finite)
  for (long i = 0; i < nu; ++i)
    for (long j = 0; j < nv; ++j) {
      float& x = D[i * nv + j];
      const float two_mm = f16(2.0f * f16(x));
      x = std::max(f16(f16(nu2[i] - two_mm) + nv2[j]), 0.0f);
      finite = finite && std::isfinite(x);
    }
  if (finite) return;
  std::vector<float> uf(u, u + size_t(nu) * d), vf(v, v + size_t(nv) * d);
  norms(uf, nu, nu2, false);
  norms(vf, nv, nv2, false);
  cblas_sgemm(blas::RowMajor, blas::NoTrans, blas::Trans, int(nu), int(nv), d, 1.0f, u, d, v, d,
              0.0f, D, int(nv));
#pragma omp parallel for schedule(static)
  for (long i = 0; i < nu; ++i)
    for (long j = 0; j < nv; ++j) {
      float& x = D[i * nv + j];
      x = std::max((nu2[i] - 2.0f * x) + nv2[j], 0.0f);
    }
}

// ManifoldEstimator.manifold_radii: per row batch, the distances to every point (column batches)
// and the (k+1)-th smallest of each row (np.partition; the row includes the point itself). The
// k+1 smallest are kept per row instead of whole rows of distances.
std::vector<float> radii(const float* x, long n, int d, int k, long rows, long cols) {
  std::vector<float> r(n), best, blk;
  for (long r0 = 0; r0 < n; r0 += rows) {
    const long m = std::min(rows, n - r0);
    best.assign(size_t(m) * (k + 1), INFINITY);  // ascending per row
    for (long c0 = 0; c0 < n; c0 += cols) {
      const long w = std::min(cols, n - c0);
      blk.resize(size_t(m) * w);
      distance_block(x + r0 * d, m, x + c0 * d, w, d, blk.data());
#pragma omp parallel for schedule(static)
      for (long i = 0; i < m; ++i) {
        float* b = best.data() + i * (k + 1);
        for (long j = 0; j < w; ++j) {
          const float v = blk[size_t(i) * w + j];
          if (!(v < b[k])) continue;
          int p = k;
          for (; p > 0 && b[p - 1] > v; --p) b[p] = b[p - 1];
          b[p] = v;
        }
      }
    }
    for (long i = 0; i < m; ++i) r[r0 + i] = best[size_t(i) * (k + 1) + k];
  }
  return r;
}

}  // namespace

PrecisionRecall precision_recall_adm(const float* real, long n_real, const float* fake, long n_fake,
                                     int dims, int k, long row_batch, long col_batch) {
  UVIT_CHECK(k >= 1, "precision/recall: k must be >= 1, got ", k);
  UVIT_CHECK(row_batch >= 1 && col_batch >= 1, "precision/recall: batch sizes must be >= 1");
  UVIT_CHECK(n_real > k && n_fake > k, "precision/recall: each set needs more than k = ", k,
             " points (real ", n_real, ", generated ", n_fake, ")");
  const std::vector<float> rr = radii(real, n_real, dims, k, row_batch, col_batch);
  const std::vector<float> rf = radii(fake, n_fake, dims, k, row_batch, col_batch);
  // evaluate_pr: blocks of real rows x fake columns; a real point is covered when inside some fake
  // ball (recall), a fake point when inside some real ball (precision).
  std::vector<char> real_in(n_real, 0), fake_in(n_fake, 0);
  std::vector<float> blk;
  for (long r0 = 0; r0 < n_real; r0 += row_batch) {
    const long m = std::min(row_batch, n_real - r0);
    for (long c0 = 0; c0 < n_fake; c0 += col_batch) {
      const long w = std::min(col_batch, n_fake - c0);
      blk.resize(size_t(m) * w);
      distance_block(real + r0 * dims, m, fake + c0 * dims, w, dims, blk.data());
      for (long i = 0; i < m; ++i)
        for (long j = 0; j < w; ++j) {
          const float x = blk[size_t(i) * w + j];
          if (x <= rf[c0 + j]) real_in[r0 + i] = 1;
          if (x <= rr[r0 + i]) fake_in[c0 + j] = 1;
        }
    }
  }
  PrecisionRecall pr;
  for (char c : fake_in) pr.precision += c;
  for (char c : real_in) pr.recall += c;
  pr.precision /= double(n_fake);
  pr.recall /= double(n_real);
  return pr;
}

}  // namespace uvit
