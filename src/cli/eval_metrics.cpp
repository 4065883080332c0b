// `uvit eval`'s reference and report (eval_metrics.hpp).
#include "cli/eval_metrics.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "uvit/error.hpp"
#include "uvit/inception.hpp"
#include "uvit/io.hpp"

namespace uvit::cli {

void add_inception_input_option(CLI::App* c, std::string& input) {
  c->add_option("--inception-input", input,
                "the Inception's input pipeline: pytorch-fid (uint8/255, torch's bilinear resize, "
                "2x-1; the default) or tf (the ADM evaluator's TF graph: [0,255], TF1's bilinear "
                "resize, (x-128)/128; for its reference batches)")
      ->check(CLI::IsMember({"pytorch-fid", "tf"}));
}

void check_work_inception_input(const std::string& manifest_path, const std::string& work,
                                InceptionInput input, const std::string& remedy) {
  std::ifstream f(manifest_path);
  if (!f) return;
  const nlohmann::json m = nlohmann::json::parse(f, nullptr, false);
  if (!m.is_object()) return;  // check_or_write_manifest says what is wrong with it
  const nlohmann::json rec = m.value("inception_input", nlohmann::json("pytorch-fid"));
  const std::string want = inception_input_name(input);
  const std::string had = rec.is_string() ? rec.get<std::string>() : rec.dump();
  UVIT_CHECK(rec == want, work, ": holds chunks whose Inception features are --inception-input ",
             had, "'s, this run asks for ", want, "; give --inception-input ", had,
             " to continue them, or ", remedy);
}

EvalReference read_eval_reference(const std::string& ref, const std::string& ref_features,
                                  InceptionInput input) {
  EvalReference r;
  r.path = ref;
  // A folder of reference images is what a new user has at hand; statistics come from fid-stats.
  UVIT_CHECK(!std::filesystem::is_directory(ref), "--ref ", ref,
             ": is a folder; give reference statistics .npz (uvit fid-stats ", ref,
             " --out ref.npz makes them) or an ADM reference batch");
  r.fid = load_fid_stats(ref);
  UVIT_CHECK(r.fid.dims == FidInception::kDims, ref, ": statistics of ", r.fid.dims,
             " dimensions, the FID Inception gives ", int(FidInception::kDims));
  if (npz_has(ref, "mu_s")) {
    r.sfid = load_fid_stats(ref, true);
    UVIT_CHECK(r.sfid->dims == FidInception::kSpatialDims, ref, ": sFID statistics (mu_s) of ",
               r.sfid->dims, " dimensions, expected ", int(FidInception::kSpatialDims),
               " (7 x 17 x 17 of mixed_6/conv)");
  }
  r.has_images = npz_has(ref, "arr_0");
  // Statistics of one pipeline against features of the other would mix them: refused. A file
  // without the record (pytorch-fid's, an ADM reference batch) cannot be checked.
  r.input = stats_inception_input(ref);
  UVIT_CHECK(!r.input || *r.input == input, "--ref ", ref,
             ": statistics made with --inception-input ",
             inception_input_name(r.input.value_or(input)), ", this run's with ",
             inception_input_name(input), ": give the same --inception-input");
  if (!ref_features.empty()) {
    Array f = load_npy(ref_features);
    UVIT_CHECK(f.shape.size() == 2 && f.shape[1] == FidInception::kDims &&
                   (f.dtype == DType::F32 || f.dtype == DType::F64),
               ref_features, ": expected float features [N, 2048], got ", dtype_name(f.dtype), " ",
               shape_str(f.shape));
    r.pool3 = f.to_f32();
    r.n_pool3 = f.shape[0];
  }
  return r;
}

std::string py_float(double v) {
  if (!std::isfinite(v)) return std::isnan(v) ? "nan" : v > 0 ? "inf" : "-inf";
  // The shortest round-trip digits d.ddd and exponent e, laid out as Python's repr does: plain
  // digits for -4 <= e < 16, else d.ddde+XX (at least two exponent digits); always a '.' or 'e'.
  char b[64];
  const auto r = std::to_chars(b, b + sizeof b, v, std::chars_format::scientific);
  const std::string s(b, r.ptr);
  const size_t e = s.find('e');
  const int exp = std::stoi(s.substr(e + 1));
  const bool neg = s[0] == '-';
  std::string digits;
  for (size_t i = neg ? 1 : 0; i < e; ++i)
    if (s[i] != '.') digits += s[i];
  std::string out = neg ? "-" : "";
  if (exp >= -4 && exp < 16) {
    if (exp < 0) {
      out += "0." + std::string(size_t(-exp - 1), '0') + digits;
    } else if (size_t(exp) + 1 >= digits.size()) {
      out += digits + std::string(size_t(exp) + 1 - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, size_t(exp) + 1) + "." + digits.substr(size_t(exp) + 1);
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  char x[16];
  std::snprintf(x, sizeof x, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
  return out + x;
}

void report_metrics(const EvalReference& ref, const std::vector<float>& pool3,
                    const std::vector<float>& logits, const std::vector<float>& spatial, long n,
                    bool all, bool quiet, nlohmann::json& res) {
  constexpr int D = FidInception::kDims, K = FidInception::kClasses, S = FidInception::kSpatialDims;
  if (all) {
    // The evaluator's: splits of 5000 samples; uvit's 10-split mean/std goes to the JSON too.
    const double is = inception_score_adm(logits.data(), n, K);
    res["inception_score"] = is;
    std::printf("Inception Score: %s\n", py_float(is).c_str());
    if (n >= 10) {
      const InceptionScore is10 = inception_score(logits.data(), n, K, 10);
      res["inception_score_10_splits"] = {{"mean", is10.mean}, {"std", is10.std}};
    }
  }
  const double fid =
      frechet_distance(stats_from_features(pool3.data(), n, D), ref.fid, "samples vs " + ref.path);
  res["fid"] = fid;
  std::printf("FID: %s\n", py_float(fid).c_str());
  if (ref.sfid) {
    const double sfid = frechet_distance(stats_from_features(spatial.data(), n, S), *ref.sfid,
                                         "samples vs " + ref.path + " (sFID)");
    res["sfid"] = sfid;
    std::printf("sFID: %s\n", py_float(sfid).c_str());
  } else if (!quiet) {
    std::fprintf(stderr, "sFID: skipped (%s has no mu_s/sigma_s; make them with uvit fid-stats)\n",
                 ref.path.c_str());
  }
  if (!all) return;
  if (ref.n_pool3 > 3 && n > 3) {
    const PrecisionRecall pr =
        precision_recall_adm(ref.pool3.data(), ref.n_pool3, pool3.data(), n, D, 3);
    res["precision"] = pr.precision;
    res["recall"] = pr.recall;
    std::printf("Precision: %s\nRecall: %s\n", py_float(pr.precision).c_str(),
                py_float(pr.recall).c_str());
  } else if (!quiet) {
    std::fprintf(stderr,
                 "Precision/Recall: skipped (%s; needs more than 3 samples and reference "
                 "features: --ref-features real.npy from uvit fid-features, or a reference batch "
                 "with arr_0)\n",
                 n > 3 ? "no reference features" : "too few samples");
  }
}

}  // namespace uvit::cli
