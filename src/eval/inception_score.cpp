// The Inception Score (Salimans et al. 2016) from Inception logits, in float64.
#include <cmath>
#include <vector>

#include "uvit/error.hpp"
#include "uvit/fid.hpp"

namespace uvit {

InceptionScore inception_score(const float* logits, long n, int classes, int splits) {
  UVIT_CHECK(splits >= 1 && n >= splits, "inception score: needs at least ", splits,
             " images (one per split), got ", n);
  // p(y|x) and log p(y|x) by a stable softmax.
  std::vector<double> p(size_t(n) * classes), lp(size_t(n) * classes);
#pragma omp parallel for schedule(static)
  for (long i = 0; i < n; ++i) {
    const float* l = logits + i * classes;
    double mx = l[0];
    for (int k = 1; k < classes; ++k) mx = std::max(mx, double(l[k]));
    double s = 0;
    for (int k = 0; k < classes; ++k) s += std::exp(double(l[k]) - mx);
    const double ls = std::log(s);
    for (int k = 0; k < classes; ++k) {
      lp[i * classes + k] = double(l[k]) - mx - ls;
      p[i * classes + k] = std::exp(lp[i * classes + k]);
    }
  }
  std::vector<double> scores;
  for (int s = 0; s < splits; ++s) {
    const long a = s * n / splits, b = (s + 1) * n / splits;
    std::vector<double> q(classes, 0.0);
    for (long i = a; i < b; ++i)
      for (int k = 0; k < classes; ++k) q[k] += p[i * classes + k];
    for (double& v : q) v = std::log(v / double(b - a));
    double kl = 0;
    for (long i = a; i < b; ++i)
      for (int k = 0; k < classes; ++k) kl += p[i * classes + k] * (lp[i * classes + k] - q[k]);
    scores.push_back(std::exp(kl / double(b - a)));
  }
  InceptionScore r;
  for (double v : scores) r.mean += v;
  r.mean /= splits;
  for (double v : scores) r.std += (v - r.mean) * (v - r.mean);
  r.std = std::sqrt(r.std / splits);
  return r;
}

}  // namespace uvit
