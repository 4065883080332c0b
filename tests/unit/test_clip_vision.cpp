// The CLIP image tower, CLIPImageProcessor's preprocessing and CLIPScore against the PyTorch twin
// of tests/reference/clip_vision_torch.py (random weights, a small config of the ViT-L/14 family,
// the HF CLIPModel key names; preprocessing by PIL itself), and the key/shape validation on
// openai/clip-vit-large-patch14's real key set (names and shapes only).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "error_of.hpp"
#include "temp_dir.hpp"
#include "torch_fixtures.hpp"
#include "uvit/backend.hpp"
#include "uvit/clip_vision.hpp"
#include "uvit/error.hpp"
#include "uvit/image.hpp"
#include "uvit/io.hpp"

using namespace uvit;
namespace fs = std::filesystem;

namespace {

const std::string kVocab =
    std::string(UVIT_TEST_SOURCE) + "/../data/clip/bpe_simple_vocab_16e6.txt.gz";

struct TempDir : uvit_test::TempDir {
  TempDir() : uvit_test::TempDir("uvit_clip_vision") {}
};

// clip_vision_torch.py fixtures, made once per test run ("" without torch + PIL).
const std::string& fixtures() {
  static const std::string d = [] {
    const uvit_test::TempDir* t = uvit_test::torch_fixtures(
        "uvit_clip_vision", "clip_vision_torch.py fixtures --vocab " + kVocab, "torch, numpy, PIL");
    return t ? t->dir.string() : std::string();
  }();
  return d;
}
#define NEED_FIXTURES()              \
  const std::string& d = fixtures(); \
  if (d.empty()) GTEST_SKIP() << "/usr/bin/python3 lacks torch or PIL"

constexpr int kImages = 6;

Image image_of(const std::string& path) {
  const Array a = load_npy(path);
  Image im(int(a.shape[1]), int(a.shape[0]), a.shape.size() == 3 ? int(a.shape[2]) : 1);
  std::copy(a.as<uint8_t>(), a.as<uint8_t>() + a.numel(), im.px.begin());
  return im;
}

using uvit_test::error_of;
using uvit_test::rel_err;

using Keys = std::vector<std::pair<std::string, std::vector<int64_t>>>;

Keys vit_l14_keys(const std::string& d, long* params = nullptr) {
  std::ifstream f(d + "/vit_l14_keys.json");
  const nlohmann::json j = nlohmann::json::parse(f);
  if (params) *params = j["parameters"].get<long>();
  Keys k;
  for (const auto& e : j["keys"]) k.emplace_back(e[0], e[1].get<std::vector<int64_t>>());
  return k;
}

}  // namespace

TEST(ClipVision, ConfigFromJson) {
  const ClipVisionConfig d;
  EXPECT_EQ(d.positions(), 257);  // ViT-L/14: 16 x 16 patches + the class token
  const auto c = ClipVisionConfig::from_json(nlohmann::json::parse(
      R"({"projection_dim": 512, "vision_config": {"hidden_size": 768, "patch_size": 16,
          "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}})"));
  EXPECT_EQ(c.projection_dim, 512);
  EXPECT_EQ(c.positions(), 197);
  EXPECT_NE(error_of([] {
              ClipVisionConfig::from_json(nlohmann::json::parse(R"({"patch_size": 15})"));
            }).find("image_size 224 is not a multiple of patch_size 15"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              ClipVisionConfig::from_json(nlohmann::json::parse(R"({"hidden_act": "relu"})"));
            }).find("hidden_act 'relu'"),
            std::string::npos);
}

TEST(ClipVision, PreprocessingIsPilBicubicAndCrop) {
  NEED_FIXTURES();
  for (int k = 0; k < kImages; ++k) {
    std::vector<float> got;
    clip_preprocess(image_of(cat(d, "/image_", k, ".npy")), 56, got);
    const std::vector<float> want = load_npy(cat(d, "/pixels_", k, ".npy")).to_f32();
    ASSERT_EQ(got.size(), want.size()) << k;
    // PIL's fixed-point resize reproduced bit for bit, then the same float32 arithmetic.
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_EQ(got[i], want[i]) << "image " << k << " @" << i;
  }
}

TEST(ClipVision, TowerAndScoreMatchTorchTwin) {
  NEED_FIXTURES();
  const ClipVisionConfig c = ClipVisionConfig::load(d + "/clip_small.json");
  ASSERT_EQ(c.hidden_size, 48);
  ASSERT_EQ(c.projection_dim, 32);
  std::vector<float> px;
  for (int k = 0; k < kImages; ++k) {
    const std::vector<float> p = load_npy(cat(d, "/pixels_", k, ".npy")).to_f32();
    px.insert(px.end(), p.begin(), p.end());
  }
  const std::vector<float> want = load_npy(d + "/image_embeds.npy").to_f32();
  const std::vector<float> want_pool = load_npy(d + "/image_pooled.npy").to_f32();
  auto be = make_cpu_backend();
  for (const char* file : {"clip_small.safetensors", "clip_small.bin"}) {
    ClipVisionModel m(c, *be);
    m.load_file(d + "/" + file);
    std::vector<float> pooled;
    const std::vector<float> e = m.forward(px.data(), kImages, &pooled);
    EXPECT_LE(rel_err(e, want), 1e-5) << file;
    EXPECT_LE(rel_err(pooled, want_pool), 1e-5) << file;
    // Batch-independent: image 4 alone gives its row of the batch.
    const std::vector<float> one = m.forward(px.data() + 4 * 3 * 56 * 56, 1);
    for (int i = 0; i < 32; ++i) EXPECT_NEAR(one[i], e[4 * 32 + i], 1e-5);
  }
  // Both towers through ClipScorer: raw uint8 images and prompts in, CLIPScore out.
  ClipScorer s(d + "/clip_small.safetensors", d + "/clip_small.json", kVocab, *be);
  std::vector<Image> ims;
  for (int k = 0; k < kImages; ++k) ims.push_back(image_of(cat(d, "/image_", k, ".npy")));
  const std::vector<float> ie = s.image_embeddings(ims, 4);  // batches of 4 and 2
  EXPECT_LE(rel_err(ie, want), 1e-5);
  std::vector<std::string> prompts;
  {
    std::ifstream f(d + "/prompts.txt");
    for (std::string line; std::getline(f, line);) prompts.push_back(line);
  }
  ASSERT_EQ(prompts.size(), size_t(kImages));
  const std::vector<float> te = s.text_embeddings(prompts, 4);
  EXPECT_LE(rel_err(te, load_npy(d + "/text_embeds.npy").to_f32()), 1e-5);
  const std::vector<double> sc = clip_scores(ie.data(), te.data(), kImages, s.dim());
  const Array want_sc = load_npy(d + "/clip_scores.npy");
  double mean = 0;
  int positive = 0;
  for (int k = 0; k < kImages; ++k) {
    const double w = want_sc.as<double>()[k];
    EXPECT_NEAR(sc[size_t(k)], w, 1e-4 * std::max(1.0, std::abs(w))) << k;
    mean += sc[size_t(k)] / kImages;
    positive += w > 0;
  }
  EXPECT_GT(positive, 0);  // the data exercise both sides of max(cos, 0)
  EXPECT_LT(positive, kImages);
  std::ifstream jf(d + "/clip_score.json");
  const double want_mean = nlohmann::json::parse(jf)["mean"].get<double>();
  EXPECT_LE(std::abs(mean - want_mean), 1e-4 * std::abs(want_mean));
}

TEST(ClipVision, ScoreFormula) {
  // Hand-computed: cos = 0.6 -> 60; opposite vectors -> 0 (clamped); zero vector -> 0.
  const float a[] = {3, 4, 1, 0, 0, 0}, b[] = {3, 0, -1, 0, 1, 1};
  const std::vector<double> s = clip_scores(a, b, 3, 2);
  EXPECT_NEAR(s[0], 60.0, 1e-12);
  EXPECT_EQ(s[1], 0.0);
  EXPECT_EQ(s[2], 0.0);
}

TEST(ClipVision, RealVitL14KeySet) {
  NEED_FIXTURES();
  long params = 0;
  const Keys keys = vit_l14_keys(d, &params);
  EXPECT_EQ(params, 427616513);  // openai/clip-vit-large-patch14's published parameter count
  const ClipVisionConfig c;      // the defaults are ViT-L/14
  ClipVisionModel::check_keys(c, keys, "vit-l14");
  // Every vision tensor the loader reads is in the real key set, with the same shape.
  size_t n = 0, vision_params = 0;
  for (const auto& [name, shape] : clip_vision_param_shapes(c)) {
    bool found = false;
    for (const auto& [k, s] : keys) found |= k == name && s == shape;
    EXPECT_TRUE(found) << name;
    ++n;
    size_t e = 1;
    for (int64_t v : shape) e *= size_t(v);
    vision_params += e;
  }
  EXPECT_EQ(n, 3u + 2u + 24u * 16u + 2u + 1u);          // embeddings, pre LN, layers, post LN, proj
  EXPECT_EQ(vision_params, 303179776u + 768u * 1024u);  // CLIPVisionModel + visual_projection
  // Missing, mis-shaped and unexpected tensors: one-line errors naming them.
  Keys missing = keys, shaped = keys;
  missing.erase(std::find_if(missing.begin(), missing.end(),
                             [](const auto& k) { return k.first == "visual_projection.weight"; }));
  EXPECT_EQ(error_of([&] { ClipVisionModel::check_keys(c, missing, "w"); }),
            "w: missing vision-model tensor visual_projection.weight");
  for (auto& k : shaped)
    if (k.first == "vision_model.embeddings.position_embedding.weight") k.second = {197, 1024};
  EXPECT_EQ(error_of([&] { ClipVisionModel::check_keys(c, shaped, "w"); }),
            "w: vision_model.embeddings.position_embedding.weight has shape [197, 1024], expected "
            "[257, 1024]");
  ClipVisionConfig c23 = c;
  c23.num_hidden_layers = 23;
  EXPECT_NE(error_of([&] {
              ClipVisionModel::check_keys(c23, keys, "w");
            }).find("w: unexpected vision-model tensor vision_model.encoder.layers.23."),
            std::string::npos);
  // A wrapper prefix is accepted, as for the text tower.
  Keys prefixed;
  for (const auto& [k, s] : keys) prefixed.emplace_back("clip." + k, s);
  ClipVisionModel::check_keys(c, prefixed, "prefixed");
}

TEST(ClipVision, BadFilesAndDims) {
  NEED_FIXTURES();
  TempDir t;
  auto be = make_cpu_backend();
  const ClipVisionConfig c = ClipVisionConfig::load(d + "/clip_small.json");
  ClipVisionModel m(c, *be);
  EXPECT_NE(error_of([&] { m.load_file(t.dir.string() + "/nope.safetensors"); }).find("nope"),
            std::string::npos);
  {  // a truncated file
    std::ifstream in(d + "/clip_small.safetensors", std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    std::ofstream(t.dir / "cut.safetensors", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    const std::string e = error_of([&] { m.load_file((t.dir / "cut.safetensors").string()); });
    EXPECT_NE(e.find("cut.safetensors"), std::string::npos) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
  {  // a config whose projection_dim differs from the file's
    ClipVisionConfig c2 = c;
    c2.projection_dim = 64;
    ClipVisionModel m2(c2, *be);
    EXPECT_EQ(error_of([&] { m2.load_file(d + "/clip_small.safetensors"); }),
              d + "/clip_small.safetensors: visual_projection.weight has shape [32, 48], expected "
                  "[64, 48]");
  }
  {  // a text-only checkpoint has no image tower
    NamedArrays text_only;
    for (auto& kv : load_weights(d + "/clip_small.safetensors"))
      if (kv.first.rfind("text_model.", 0) == 0) text_only.push_back(kv);
    EXPECT_NE(error_of([&] {
                m.load(text_only, "text.safetensors");
              }).find("text.safetensors: missing vision-model tensor vision_model."),
              std::string::npos);
  }
  // A bf16 backend is refused (the encoders are fp32 models): checked where CUDA exists.
}
