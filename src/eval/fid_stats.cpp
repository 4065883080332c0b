// FID statistics: mean and unbiased covariance of features, and their pytorch-fid .npz files.
#include <algorithm>
#include <cmath>

#include "eval/lapack.hpp"
#include "uvit/error.hpp"
#include "uvit/fid.hpp"
#include "uvit/io.hpp"

namespace uvit {

FidStats stats_from_features(const float* f, long n, int d) {
  UVIT_CHECK(n >= 2, "FID statistics need at least 2 images, got ", n);
  FidStats s;
  s.dims = d;
  s.mu.assign(d, 0.0);
  for (long i = 0; i < n; ++i)
    for (int j = 0; j < d; ++j) s.mu[j] += f[i * d + j];
  for (double& m : s.mu) m /= double(n);
  // np.cov(rowvar=False): (X - mu)^T (X - mu) / (n - 1), accumulated over row chunks in float64.
  s.sigma.assign(size_t(d) * d, 0.0);
  const long chunk = 4096;
  std::vector<double> xc(size_t(std::min(n, chunk)) * d);
  for (long r0 = 0; r0 < n; r0 += chunk) {
    const long rows = std::min(chunk, n - r0);
    for (long i = 0; i < rows; ++i)
      for (int j = 0; j < d; ++j) xc[i * d + j] = double(f[(r0 + i) * d + j]) - s.mu[j];
    cblas_dsyrk(blas::RowMajor, blas::Upper, blas::Trans, d, int(rows), 1.0 / double(n - 1),
                xc.data(), d, 1.0, s.sigma.data(), d);
  }
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < i; ++j) s.sigma[size_t(i) * d + j] = s.sigma[size_t(j) * d + i];
  return s;
}

namespace {
std::vector<double> as_f64(const Array& a) {
  if (a.dtype == DType::F64) return {a.as<double>(), a.as<double>() + a.numel()};
  std::vector<float> f = a.to_f32();
  return {f.begin(), f.end()};
}
}  // namespace

bool npz_has(const std::string& path, const std::string& key) {
  const std::vector<std::string> names = npz_names(path);
  return std::find(names.begin(), names.end(), key) != names.end();
}

FidStats load_fid_stats(const std::string& path, bool spatial) {
  const std::string km = spatial ? "mu_s" : "mu", ks = spatial ? "sigma_s" : "sigma";
  NamedArrays z = load_npz(path, {km, ks});
  const Array *mu = nullptr, *sigma = nullptr;
  for (const auto& [k, v] : z) {
    if (k == km) mu = &v;
    if (k == ks) sigma = &v;
  }
  UVIT_CHECK(mu && sigma, path,
             spatial ? ": no sFID statistics (needs arrays 'mu_s' and 'sigma_s')"
                     : ": not FID statistics (needs arrays 'mu' and 'sigma')");
  UVIT_CHECK(mu->shape.size() == 1 && mu->shape[0] > 0, path, ": ", km, " has shape ",
             shape_str(mu->shape), ", expected [d]");
  const int64_t d = mu->shape[0];
  UVIT_CHECK(sigma->shape == std::vector<int64_t>({d, d}), path, ": ", ks, " has shape ",
             shape_str(sigma->shape), ", expected ", shape_str({d, d}));
  UVIT_CHECK(mu->dtype == DType::F64 || mu->dtype == DType::F32, path, ": ", km,
             " must be float64 or float32, got ", dtype_name(mu->dtype));
  UVIT_CHECK(sigma->dtype == DType::F64 || sigma->dtype == DType::F32, path, ": ", ks,
             " must be float64 or float32, got ", dtype_name(sigma->dtype));
  FidStats s;
  s.dims = int(d);
  s.mu = as_f64(*mu);
  s.sigma = as_f64(*sigma);
  for (double v : s.mu) UVIT_CHECK(std::isfinite(v), path, ": ", km, " has non-finite values");
  for (double v : s.sigma) UVIT_CHECK(std::isfinite(v), path, ": ", ks, " has non-finite values");
  return s;
}

void save_fid_stats(const std::string& path, const FidStats& s, const FidStats* spatial,
                    InceptionInput input) {
  NamedArrays out;
  auto add = [&](const FidStats& st, const char* km, const char* ks) {
    const int64_t d = st.dims;
    UVIT_CHECK(st.mu.size() == size_t(d) && st.sigma.size() == size_t(d * d), path,
               ": malformed statistics");
    Array mu(DType::F64, {d}), sigma(DType::F64, {d, d});
    std::copy(st.mu.begin(), st.mu.end(), mu.as<double>());
    std::copy(st.sigma.begin(), st.sigma.end(), sigma.as<double>());
    out.emplace_back(km, std::move(mu));
    out.emplace_back(ks, std::move(sigma));
  };
  add(s, "mu", "sigma");
  if (spatial) add(*spatial, "mu_s", "sigma_s");
  if (input != InceptionInput::PytorchFid) {
    const std::string name = inception_input_name(input);
    Array a(DType::U8, {int64_t(name.size())});
    std::copy(name.begin(), name.end(), a.as<uint8_t>());
    out.emplace_back("inception_input", std::move(a));
  }
  save_npz(path, out);
}

std::optional<InceptionInput> stats_inception_input(const std::string& path) {
  if (!npz_has(path, "inception_input")) return std::nullopt;
  const NamedArrays z = load_npz(path, {"inception_input"});
  UVIT_CHECK(z.size() == 1 && z[0].second.dtype == DType::U8 && z[0].second.shape.size() == 1, path,
             ": member inception_input must be uint8 [n] (the pipeline's name)");
  const Array& a = z[0].second;
  return parse_inception_input(std::string(a.as<uint8_t>(), a.as<uint8_t>() + a.numel()),
                               path + ": inception_input");
}

}  // namespace uvit
