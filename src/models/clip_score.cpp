// CLIPImageProcessor's preprocessing and CLIPScore over both CLIP towers (docs/clip_score.md).
#include <algorithm>
#include <cmath>

#include "dist/weights_hash.hpp"
#include "uvit/clip_vision.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace uvit {

void clip_preprocess(const Image& in, int size, std::vector<float>& out) {
  UVIT_CHECK(in.w > 0 && in.h > 0 && (in.c == 1 || in.c == 3),
             "clip: expected a gray or RGB image, got ", in.w, "x", in.h, "x", in.c);
  // Shorter side -> size, the longer int(size * long / short) (Python's true division, truncated).
  const bool portrait = in.w <= in.h;
  const int shorter = portrait ? in.w : in.h, longer = portrait ? in.h : in.w;
  const int nl = int(double(int64_t(size) * longer) / double(shorter));
  const int nw = portrait ? size : nl, nh = portrait ? nl : size;
  // Channels are resampled independently, so a gray image is resized once and replicated (PIL's
  // convert("RGB") copies L into R, G and B).
  const Image r = (nw == in.w && nh == in.h) ? in : resize_pil(in, nw, nh, Resample::Bicubic);
  const int top = (nh - size) / 2, left = (nw - size) / 2;
  const size_t base = out.size();
  out.resize(base + size_t(3) * size * size);
  for (int ch = 0; ch < 3; ++ch) {
    const int src = r.c == 1 ? 0 : ch;
    float* o = out.data() + base + size_t(ch) * size * size;
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x) {
        // HF: uint8 * (1/255) in float64 -> float32, then (x - mean) / std in float32.
        const float v = float(double(r.at(top + y, left + x, src)) * (1.0 / 255.0));
        o[size_t(y) * size + x] = (v - kClipMean[ch]) / kClipStd[ch];
      }
  }
}

std::vector<double> clip_scores(const float* a, const float* b, long n, int d) {
  std::vector<double> s(static_cast<size_t>(n));
  for (long i = 0; i < n; ++i) {
    double ab = 0, aa = 0, bb = 0;
    for (int k = 0; k < d; ++k) {
      const double x = a[size_t(i) * d + k], y = b[size_t(i) * d + k];
      ab += x * y;
      aa += x * x;
      bb += y * y;
    }
    const double c = (aa > 0 && bb > 0) ? ab / std::sqrt(aa * bb) : 0.0;
    s[size_t(i)] = 100.0 * std::max(c, 0.0);
  }
  return s;
}

ClipScorer::ClipScorer(const std::string& weights, const std::string& config,
                       const std::string& vocab, Backend& be)
    : tok_(ClipTokenizer::load(clip_vocab_path(vocab))),
      vision_(ClipVisionConfig::load(config), be),
      text_(ClipTextConfig::load(config), be) {
  UVIT_CHECK(vision_.config().projection_dim == text_.config().projection_dim,
             config.empty() ? std::string("clip config") : config,
             ": projection_dim differs (vision ", vision_.config().projection_dim, ", text ",
             text_.config().projection_dim, ")");
  // Each tower reads its own tensors from the file, straight into its parameters (the file's
  // directory is read twice, its tensors once).
  vision_.load_file(weights);
  text_.load_file(weights);
  UVIT_CHECK(text_.has_projection(), weights,
             ": no text_projection.weight (CLIPScore needs a CLIPModel checkpoint with both towers "
             "and their projections, e.g. openai/clip-vit-large-patch14)");
}

uint64_t ClipScorer::weights_hash() const {
  const uint64_t towers[2] = {vision_.weights_hash(), text_.weights_hash()};
  return hash_bytes(towers, sizeof towers, kWeightsHashSeed);
}

std::vector<float> ClipScorer::image_embeddings(const std::vector<Image>& images, int batch) {
  const int S = vision_.config().image_size, D = dim();
  std::vector<float> out(images.size() * size_t(D)), px;
  for (size_t i0 = 0; i0 < images.size(); i0 += size_t(batch)) {
    const size_t m = std::min(images.size() - i0, size_t(batch));
    px.clear();
    for (size_t j = 0; j < m; ++j) clip_preprocess(images[i0 + j], S, px);
    const std::vector<float> e = vision_.forward(px.data(), int(m));
    std::copy(e.begin(), e.end(), out.begin() + ptrdiff_t(i0 * D));
  }
  return out;
}

std::vector<float> ClipScorer::text_embeddings(const std::vector<std::string>& prompts, int batch,
                                               std::vector<float>* contexts) {
  const int L = ClipTokenizer::kContextLength;
  std::vector<float> out;
  for (size_t i0 = 0; i0 < prompts.size(); i0 += size_t(batch)) {
    const size_t m = std::min(prompts.size() - i0, size_t(batch));
    std::vector<int> ids;
    for (size_t j = 0; j < m; ++j) {
      const auto t = tok_.tokenize(prompts[i0 + j], L);
      ids.insert(ids.end(), t.begin(), t.end());
    }
    const std::vector<float> hidden = text_.forward(ids, int(m), L);
    const std::vector<float> e = text_.project_pooled(hidden, ids, int(m), L);
    out.insert(out.end(), e.begin(), e.end());
    if (contexts) contexts->insert(contexts->end(), hidden.begin(), hidden.end());
  }
  return out;
}

}  // namespace uvit
