// Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN manifolds; squared
// Euclidean distances by blocks of GEMMs (the ordering equals that of Euclidean distances).
#include <algorithm>
#include <vector>

#include "eval/lapack.hpp"
#include "uvit/error.hpp"
#include "uvit/fid.hpp"

namespace uvit {

namespace {

std::vector<float> sq_norms(const float* x, long n, int d) {
  std::vector<float> r(n);
#pragma omp parallel for schedule(static)
  for (long i = 0; i < n; ++i) {
    double s = 0;
    for (int j = 0; j < d; ++j) s += double(x[i * d + j]) * x[i * d + j];
    r[i] = float(s);
  }
  return r;
}

// Calls fn(row0, rows, dist) with dist[rows, nb] = squared distances of a[row0 ..] to every b.
template <class F>
void blocks(const float* a, long na, const float* b, long nb, int d, F fn) {
  const std::vector<float> na2 = sq_norms(a, na, d), nb2 = sq_norms(b, nb, d);
  const long rows = std::max(1L, std::min(na, (1L << 24) / std::max(1L, nb)));
  std::vector<float> dist(size_t(rows) * nb);
  for (long r0 = 0; r0 < na; r0 += rows) {
    const long m = std::min(rows, na - r0);
    cblas_sgemm(blas::RowMajor, blas::NoTrans, blas::Trans, int(m), int(nb), d, -2.0f, a + r0 * d,
                d, b, d, 0.0f, dist.data(), int(nb));
#pragma omp parallel for schedule(static)
    for (long i = 0; i < m; ++i)
      for (long j = 0; j < nb; ++j)
        dist[i * nb + j] = std::max(0.0f, dist[i * nb + j] + na2[r0 + i] + nb2[j]);
    fn(r0, m, dist.data());
  }
}

// Squared distance of each point to its k-th nearest neighbour in the same set (itself excluded:
// entry k of the sorted row that includes the point's own 0).
std::vector<float> radii(const float* x, long n, int d, int k) {
  std::vector<float> r(n);
  blocks(x, n, x, n, d, [&](long r0, long m, float* dist) {
#pragma omp parallel for schedule(static)
    for (long i = 0; i < m; ++i) {
      float* row = dist + i * n;
      row[r0 + i] = 0;  // exactly 0 for itself despite rounding
      std::nth_element(row, row + k, row + n);
      r[r0 + i] = row[k];
    }
  });
  return r;
}

// Share of the points of `q` inside the manifold of `x` (radii rx).
double coverage(const float* q, long nq, const float* x, long nx, const std::vector<float>& rx,
                int d) {
  long inside = 0;
  blocks(q, nq, x, nx, d, [&](long, long m, float* dist) {
    long c = 0;
#pragma omp parallel for reduction(+ : c) schedule(static)
    for (long i = 0; i < m; ++i) {
      const float* row = dist + i * nx;
      for (long j = 0; j < nx; ++j)
        if (row[j] <= rx[j]) {
          ++c;
          break;
        }
    }
    inside += c;
  });
  return double(inside) / double(nq);
}

}  // namespace

PrecisionRecall precision_recall(const float* real, long n_real, const float* fake, long n_fake,
                                 int dims, int k) {
  UVIT_CHECK(k >= 1, "precision/recall: k must be >= 1, got ", k);
  UVIT_CHECK(n_real > k && n_fake > k, "precision/recall: each set needs more than k = ", k,
             " points (real ", n_real, ", generated ", n_fake, ")");
  const std::vector<float> rr = radii(real, n_real, dims, k), rf = radii(fake, n_fake, dims, k);
  PrecisionRecall pr;
  pr.precision = coverage(fake, n_fake, real, n_real, rr, dims);
  pr.recall = coverage(real, n_real, fake, n_fake, rf, dims);
  return pr;
}

}  // namespace uvit
