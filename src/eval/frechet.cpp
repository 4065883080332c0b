// The Frechet distance between two Gaussians, as pytorch-fid computes it (SPEC 17), with
// tr(sqrtm(s1 s2)) from a symmetric eigenproblem instead of scipy's Schur-based sqrtm.
//
// Why this is the same number: the eigenvalues of s1 s2 equal those of sqrt(s1) s2 sqrt(s1)
// (similar matrices), which is symmetric PSD; the trace of sqrtm(s1 s2) is the sum of the square
// roots of those eigenvalues. scipy's sqrtm has diag(R) = sqrt(diag(T)) of the Schur form, so its
// trace is the same sum; tiny negative eigenvalues (rounding, rank-deficient covariances) give
// purely imaginary roots there, whose real part pytorch-fid keeps: 0, as our clamp at 0.
#include <cmath>
#include <vector>

#include "eval/lapack.hpp"
#include "uvit/error.hpp"
#include "uvit/fid.hpp"

namespace uvit {

namespace {
// Eigenvalues (ascending) of the symmetric d x d matrix a; with vectors, a is overwritten by them
// (column j of the column-major result = row j of the row-major array).
std::vector<double> eigh(std::vector<double>& a, int d, bool vectors) {
  std::vector<double> w(d);
  const char jobz = vectors ? 'V' : 'N', uplo = 'U';
  int info = 0, lwork = -1, liwork = -1, iwq = 0;
  double wq = 0;
  dsyevd_(&jobz, &uplo, &d, a.data(), &d, w.data(), &wq, &lwork, &iwq, &liwork, &info);
  UVIT_CHECK(info == 0, "frechet distance: LAPACK dsyevd workspace query failed (info ", info, ")");
  lwork = int(wq), liwork = iwq;
  std::vector<double> work(std::max(1, lwork));
  std::vector<int> iwork(std::max(1, liwork));
  dsyevd_(&jobz, &uplo, &d, a.data(), &d, w.data(), work.data(), &lwork, iwork.data(), &liwork,
          &info);
  UVIT_CHECK(info == 0, "frechet distance: the eigen-decomposition did not converge (info ", info,
             ")");
  return w;
}
}  // namespace

double trace_sqrt_product(const double* s1, const double* s2, int d) {
  if (d == 0) return 0;
  // Pivoted Cholesky of the PSD s1: P^T s1 P = L L^T with L [d, r] lower trapezoidal (rank r;
  // the trailing Schur complement below n * eps * max(diag) is dropped, which handles singular
  // covariances). Then M = L^T (P^T s2 P) L is r x r, symmetric PSD, and has the nonzero
  // eigenvalues of s1 s2. About 6 d^3 flops instead of sqrtm's Schur decomposition.
  std::vector<double> a(s1, s1 + size_t(d) * d);
  std::vector<int> piv(d);
  std::vector<double> work(2 * size_t(d));
  int rank = 0, info = 0;
  const double tol = -1;  // LAPACK default tolerance
  const char lo = 'L';
  dpstrf_(&lo, &d, a.data(), &d, piv.data(), &rank, &tol, work.data(), &info);
  UVIT_CHECK(info >= 0, "frechet distance: LAPACK dpstrf failed (info ", info, ")");
  if (rank == 0) return 0;
  // Column j of the column-major L is row j of the row-major array: lt = L^T [r, d]; clear the
  // entries above the diagonal of L (left of it in lt), which still hold s1.
  for (int j = 0; j < rank; ++j)
    for (int i = 0; i < j; ++i) a[size_t(j) * d + i] = 0;
  std::vector<double> s2p(size_t(d) * d);
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < d; ++j) s2p[size_t(i) * d + j] = s2[size_t(piv[i] - 1) * d + piv[j] - 1];
  std::vector<double> t(size_t(rank) * d), m(size_t(rank) * rank);
  using namespace blas;
  cblas_dgemm(RowMajor, NoTrans, NoTrans, rank, d, d, 1.0, a.data(), d, s2p.data(), d, 0.0,
              t.data(), d);
  cblas_dgemm(RowMajor, NoTrans, Trans, rank, rank, d, 1.0, t.data(), d, a.data(), d, 0.0, m.data(),
              rank);
  std::vector<double> lam = eigh(m, rank, false);  // reads one triangle
  double tr = 0;
  for (double l : lam) tr += std::sqrt(std::max(l, 0.0));
  return tr;
}

double frechet_distance(const FidStats& a, const FidStats& b, const std::string& what) {
  const int d = a.dims;
  UVIT_CHECK(a.dims == b.dims, what, ": the statistics have different dimensions (", a.dims,
             " and ", b.dims, ")");
  UVIT_CHECK(a.mu.size() == size_t(d) && b.mu.size() == size_t(d) &&
                 a.sigma.size() == size_t(d) * d && b.sigma.size() == size_t(d) * d,
             what, ": malformed statistics (mu/sigma sizes do not match dims ", d, ")");
  for (const FidStats* s : {&a, &b}) {
    for (double v : s->mu) UVIT_CHECK(std::isfinite(v), what, ": mu has non-finite values");
    for (double v : s->sigma) UVIT_CHECK(std::isfinite(v), what, ": sigma has non-finite values");
  }
  double diff2 = 0, tr1 = 0, tr2 = 0;
  for (int i = 0; i < d; ++i) {
    const double df = a.mu[i] - b.mu[i];
    diff2 += df * df;
    tr1 += a.sigma[size_t(i) * d + i];
    tr2 += b.sigma[size_t(i) * d + i];
  }
  double covmean = trace_sqrt_product(a.sigma.data(), b.sigma.data(), d);
  if (!std::isfinite(covmean)) {
    // pytorch-fid's fallback for a product that has no (finite) square root: 1e-6 I on both.
    std::vector<double> s1 = a.sigma, s2 = b.sigma;
    for (int i = 0; i < d; ++i) s1[size_t(i) * d + i] += 1e-6, s2[size_t(i) * d + i] += 1e-6;
    covmean = trace_sqrt_product(s1.data(), s2.data(), d);
  }
  UVIT_CHECK(std::isfinite(covmean), what, ": tr(sqrtm(sigma1 sigma2)) is not finite");
  return diff2 + tr1 + tr2 - 2 * covmean;
}

}  // namespace uvit
