// Sample-quality metrics on Inception features (SPEC 17): FID statistics and the Frechet distance
// (pytorch-fid compatible), the Inception Score, and k-NN precision/recall.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "uvit/array.hpp"
#include "uvit/inception.hpp"  // InceptionInput

namespace uvit {

class FidInception;

// mu [d] and sigma [d, d] in float64, as pytorch-fid's .npz files hold them.
struct FidStats {
  int dims = 0;
  std::vector<double> mu, sigma;
};

// mu = mean over rows; sigma = unbiased (N - 1) covariance (np.cov(rowvar=False)). Needs n >= 2.
FidStats stats_from_features(const float* features, long n, int dims);
// .npz with keys "mu" [d] and "sigma" [d, d] (any float dtype; stored as float64); with
// spatial = true the sFID statistics "mu_s" and "sigma_s" instead (an ADM reference batch holds
// both pairs next to its images arr_0). Only those two members are read.
FidStats load_fid_stats(const std::string& path, bool spatial = false);
// Writes mu, sigma and, when `spatial` is given, mu_s, sigma_s (the ADM evaluator's keys). Atomic,
// float64. The Tf input pipeline is recorded as the member "inception_input" (uint8, the ASCII
// bytes of "tf"); the default pytorch-fid one is not, so those files stay as pytorch-fid writes
// them (docs/evaluation.md "The TF graph's input pipeline").
void save_fid_stats(const std::string& path, const FidStats& s, const FidStats* spatial = nullptr,
                    InceptionInput input = InceptionInput::PytorchFid);
// The pipeline a statistics file records: its "inception_input" member, or nullopt when it has
// none (pytorch-fid's and uvit's own default files, and the ADM reference batches, made by TF).
std::optional<InceptionInput> stats_inception_input(const std::string& path);
// Whether the .npz `path` has a member named `key` (reads the zip directory only).
bool npz_has(const std::string& path, const std::string& key);

// sum_i sqrt(lambda_i) over the eigenvalues of s1 * s2, i.e. tr(sqrtm(s1 s2)), computed from the
// symmetric PSD matrix sqrt(s1) s2 sqrt(s1) (eigenvalues clamped at 0, which equals the real part
// that pytorch-fid keeps). s1, s2: row-major d x d symmetric.
double trace_sqrt_product(const double* s1, const double* s2, int d);
// ||mu1 - mu2||^2 + tr(s1) + tr(s2) - 2 tr(sqrtm(s1 s2)). Non-finite input throws naming `what`.
double frechet_distance(const FidStats& a, const FidStats& b, const std::string& what = "stats");

// Inception Score from [n, classes] logits: softmax over all classes (float64), `splits` equal
// consecutive splits (no shuffling), exp(mean KL(p(y|x) || p(y))) per split; mean and population
// std over the splits.
struct InceptionScore {
  double mean = 0, std = 0;
};
InceptionScore inception_score(const float* logits, long n, int classes, int splits = 10);

// Improved precision and recall (Kynkaanniemi et al. 2019): each set's manifold is the union of
// balls around its points with radius = distance to the k-th nearest other point of the same set.
// precision = share of fake points inside the real manifold; recall = share of real points inside
// the fake manifold. Euclidean distances; a point on the boundary counts as inside.
struct PrecisionRecall {
  double precision = 0, recall = 0;
};
PrecisionRecall precision_recall(const float* real, long n_real, const float* fake, long n_fake,
                                 int dims, int k = 3);

// The ADM evaluator's metrics (openai/guided-diffusion evaluations/evaluator.py; facts in
// docs/evaluation.md "The ADM evaluator"). Its Inception Score: softmax of the logits, splits of
// `split_size` consecutive samples (the last one shorter), the mean of exp(mean KL) over splits.
double inception_score_adm(const float* logits, long n, int classes, long split_size = 5000);
// Its precision/recall (ManifoldEstimator, k = 3): squared distances by blocks of row_batch x
// col_batch points, each block first in float16 (TensorFlow's arithmetic: fp16 inputs, fp32
// accumulation, every op rounded to fp16) and again in float32 when any fp16 value is not finite;
// radius = the (k+1)-th smallest squared distance of a point's row (itself included); a point is
// inside when its squared distance <= a radius.
PrecisionRecall precision_recall_adm(const float* real, long n_real, const float* fake, long n_fake,
                                     int dims, int k = 3, long row_batch = 10000,
                                     long col_batch = 10000);

// Images to features. A SOURCE is a folder of images (pytorch-fid's extensions, lowercase,
// not recursive, sorted by path) or a .npy of uint8 images [N, H, W, C] (C = 1 or 3) or [N, H, W].
// Returns pool3 [N, 2048] (and logits [N, 1008] when `logits` is non-null, sFID's spatial features
// [N, 2023] when `spatial` is). progress(done, total).
// part / parts (data-parallel ranks): only that contiguous share of the images, in whole batches
// of 32 (each computed as in one process); the rows of all parts in order make the whole.
std::vector<float> source_features(const FidInception& net, const std::string& source,
                                   std::vector<float>* logits = nullptr,
                                   const std::function<void(long, long)>& progress = {},
                                   std::vector<float>* spatial = nullptr, int part = 0,
                                   int parts = 1);
// A .npy that already holds features: float32/float64 [N, 2048]. Non-features .npy -> false.
bool is_feature_npy(const std::string& path);
// Images of a SOURCE (as source_features) in order, `chunk` at a time, as runs of one size:
// fn(run) with run.px = run.n images [h, w, c] (a folder's images are decoded to RGB, c = 3; a
// .npy/.npz keeps its C). range(n) picks the images [lo, hi) of the n to visit.
struct ImageRun {
  long first;
  int n, h, w, c;
  const uint8_t* px;
  long lo, hi;  // the visited range
};
void visit_image_source(const std::string& source, long chunk,
                        const std::function<std::pair<long, long>(long)>& range,
                        const std::function<void(const ImageRun&)>& fn);
// Image files of a folder in pytorch-fid's order; throws when there are none.
std::vector<std::string> list_image_files(const std::string& dir);

}  // namespace uvit
