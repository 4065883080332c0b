// CLIP tokenizer (real vocabulary: hand-checked sequences and the Python reference of
// tests/reference/clip_torch.py) and the CLIP text transformer against its PyTorch twin.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "data/mscoco_features.hpp"
#include "error_of.hpp"
#include "temp_dir.hpp"
#include "torch_fixtures.hpp"
#include "uvit/backend.hpp"
#include "uvit/clip.hpp"
#include "uvit/error.hpp"
#include "uvit/image.hpp"
#include "uvit/io.hpp"

using namespace uvit;
namespace fs = std::filesystem;

namespace {

const std::string kVocab =
    std::string(UVIT_TEST_SOURCE) + "/../data/clip/bpe_simple_vocab_16e6.txt.gz";

const ClipTokenizer& tok() {
  static ClipTokenizer t = ClipTokenizer::from_bpe_file(kVocab);
  return t;
}

// Temporary directories named after this suite.
struct TempDir : uvit_test::TempDir {
  TempDir() : uvit_test::TempDir("uvit_clip") {}
};

// clip_torch.py fixtures, made once per test run ("" when /usr/bin/python3 has no torch).
const std::string& fixtures() {
  static const std::string d = [] {
    const uvit_test::TempDir* t =
        uvit_test::torch_fixtures("uvit_clip", "clip_torch.py fixtures --vocab " + kVocab);
    return t ? t->dir.string() : std::string();
  }();
  return d;
}

// (vocabulary entry, id) pairs: each id checked by hand against the merges list (merge r gives id
// 512 + r; byte symbols are 0..255 in GPT-2 byte order, their </w> forms 256..511).
using Seq = std::vector<std::pair<std::string, int>>;

void expect_seq(const std::string& prompt, const Seq& want) {
  std::vector<int> got = tok().encode(prompt);
  ASSERT_EQ(got.size(), want.size()) << "prompt '" << prompt << "'";
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i], want[i].second) << "prompt '" << prompt << "' token " << i;
    EXPECT_EQ(tok().token(want[i].second), want[i].first) << "vocabulary entry " << want[i].second;
  }
}

using uvit_test::error_of;

}  // namespace

TEST(ClipTokenizer, VocabularyShape) {
  EXPECT_EQ(tok().vocab_size(), 49408);
  EXPECT_EQ(tok().start_id(), 49406);
  EXPECT_EQ(tok().end_id(), 49407);
  EXPECT_EQ(tok().token(0), "!");
  EXPECT_EQ(tok().token(256), "!</w>");
  EXPECT_EQ(tok().token(188), "\xC4\x80");  // byte 0 -> U+0100
  EXPECT_EQ(tok().token(512), "in");        // the first merge, "i n"
}

TEST(ClipTokenizer, HandCheckedSequences) {
  // Common words.
  expect_seq(
      "a photo of a cat",
      {{"a</w>", 320}, {"photo</w>", 1125}, {"of</w>", 539}, {"a</w>", 320}, {"cat</w>", 2368}});
  // Case, punctuation runs and repeated whitespace.
  expect_seq("Hello,   World!!",
             {{"hello</w>", 3306}, {",</w>", 267}, {"world</w>", 1002}, {"!!</w>", 748}});
  // Contractions ('m 're 've 'll 'd 't) and a quote that is not one.
  expect_seq("I'm we're they've you'll he'd can't", {{"i</w>", 328},
                                                     {"'m</w>", 880},
                                                     {"we</w>", 649},
                                                     {"'re</w>", 982},
                                                     {"they</w>", 889},
                                                     {"'ve</w>", 1200},
                                                     {"you</w>", 592},
                                                     {"'ll</w>", 1342},
                                                     {"he</w>", 797},
                                                     {"'d</w>", 1896},
                                                     {"can</w>", 753},
                                                     {"'t</w>", 713}});
  expect_seq(
      "rock'n'roll",
      {{"rock</w>", 2172}, {"'</w>", 262}, {"n</w>", 333}, {"'</w>", 262}, {"roll</w>", 3341}});
  // Numbers: one digit per token.
  expect_seq("1234 3.14", {{"1</w>", 272},
                           {"2</w>", 273},
                           {"3</w>", 274},
                           {"4</w>", 275},
                           {"3</w>", 274},
                           {".</w>", 269},
                           {"1</w>", 272},
                           {"4</w>", 275}});
  // Accents: UTF-8 bytes in GPT-2's byte alphabet (é = C3 A9 -> "Ã©").
  expect_seq("café naïve", {{"caf\xC3\x83\xC2\xA9</w>", 15304},
                            {"na", 1097},
                            {"\xC3\x83\xC2\xAF", 35689},
                            {"ve</w>", 563}});
  // CJK: 東 = E6 9D B1, 京 = E4 BA AC; both one letter run.
  expect_seq(
      "東京",
      {{"\xC3\xA6\xC4\xBF\xC2\xB1", 48338}, {"\xC3\xA4\xC2\xBA", 21078}, {"\xC2\xAC</w>", 361}});
  // Emoji (F0 9F 98 80) is one token.
  expect_seq("😀", {{"\xC3\xB0\xC5\x81\xC4\xBA\xC4\xA2</w>", 7334}});
  // Greek capitals lower-case with a final sigma: ο = CE BF -> 138 123, ς = CF 82 -> 139, 224+256.
  expect_seq("ΟΣ",
             {{"\xC3\x8E", 138}, {"\xC2\xBF", 123}, {"\xC3\x8F", 139}, {"\xC4\xA4</w>", 480}});
  expect_seq("", {});
  expect_seq(" \t\n  ", {});
}

TEST(ClipTokenizer, PaddingAndTruncation) {
  std::vector<int> e = tok().tokenize("");
  ASSERT_EQ(e.size(), 77u);
  EXPECT_EQ(e[0], 49406);
  for (int i = 1; i < 77; ++i) EXPECT_EQ(e[size_t(i)], 49407) << i;
  std::vector<int> c = tok().tokenize("a photo of a cat");
  std::vector<int> head(c.begin(), c.begin() + 8);
  EXPECT_EQ(head, (std::vector<int>{49406, 320, 1125, 539, 320, 2368, 49407, 49407}));
  // 100 words: start + the first 75 + end, no padding.
  std::string lng;
  for (int i = 0; i < 100; ++i) lng += (i % 2 ? "dog " : "cat ");
  std::vector<int> t = tok().tokenize(lng);
  ASSERT_EQ(t.size(), 77u);
  EXPECT_EQ(t[0], 49406);
  EXPECT_EQ(t[1], 2368);
  EXPECT_EQ(t[2], 1929);  // "dog</w>"
  EXPECT_EQ(tok().token(1929), "dog</w>");
  EXPECT_EQ(t[75], 2368);  // the 75th word (odd position: cat)
  EXPECT_EQ(t[76], 49407);
  EXPECT_EQ(tok().tokenize(lng, 10).size(), 10u);
}

TEST(ClipTokenizer, CleaningAndPretokenization) {
  EXPECT_EQ(clip_clean_text("  Hello\t\n WORLD \xE3\x80\x80x  "),
            "hello world x");                           // U+3000 is space
  EXPECT_EQ(clip_clean_text("\xC4\xB0"), "i\xCC\x87");  // İ lower-cases to two code points
  EXPECT_EQ(clip_clean_text("\xCE\xA3\xCE\xA3 \xCE\xA3"),
            "\xCF\x83\xCF\x82 \xCF\x83");  // ΣΣ Σ -> σς σ
  EXPECT_EQ(
      clip_pretokenize("it's 12ab<|endoftext|>!?x 'ſ"),
      (std::vector<std::string>{"it", "'s", "1", "2", "ab", "<|endoftext|>", "!?", "x", "'ſ"}));
  EXPECT_EQ(tok().tokenize("<|startoftext|>x<|endoftext|>")[1], 49406);
  EXPECT_NE(error_of([] { clip_clean_text("bad \xC3"); }).find("invalid UTF-8 at byte 4"),
            std::string::npos);
  EXPECT_NE(error_of([] { clip_clean_text("\xED\xA0\x80"); }).find("invalid UTF-8"),
            std::string::npos);
  EXPECT_NE(error_of([] { clip_clean_text("\xC0\x80"); }).find("invalid UTF-8"), std::string::npos);
}

TEST(ClipTokenizer, MatchesPythonReference) {
  const std::string& d = fixtures();
  if (d.empty()) GTEST_SKIP() << "python3-torch is not available to /usr/bin/python3";
  std::ifstream f(d + "/tokenizer_cases.json");
  nlohmann::json cases = nlohmann::json::parse(f);
  ASSERT_GE(cases.size(), 20u);
  ClipTokenizer hf = ClipTokenizer::load(d + "/hf");
  EXPECT_EQ(hf.vocab_size(), 49408);
  for (const auto& c : cases) {
    std::string p = c["prompt"];
    std::vector<int> want = c["ids"];
    EXPECT_EQ(tok().tokenize(p), want) << "prompt '" << p << "'";
    EXPECT_EQ(hf.tokenize(p), want) << "HF files, prompt '" << p << "'";
  }
}

TEST(ClipTokenizer, BadFiles) {
  TempDir t;
  EXPECT_NE(error_of([&] { ClipTokenizer::load(t / "none.txt.gz"); }).find("file not found"),
            std::string::npos);
  { std::ofstream(t / "short.txt") << "#version\ni n\nt h\n"; }
  EXPECT_NE(
      error_of([&] { ClipTokenizer::load(t / "short.txt"); }).find("2 merges, expected 48894"),
      std::string::npos);
  std::vector<uint8_t> gz = read_file(kVocab);
  gz.resize(gz.size() / 2);
  write_file_atomic(t / "cut.txt.gz", gz.data(), gz.size());
  EXPECT_NE(error_of([&] { ClipTokenizer::load(t / "cut.txt.gz"); }).find("truncated gzip"),
            std::string::npos);
  {
    std::ofstream(t / "vocab.json") << "{\"a\": 0, \"b\": 0}";
    std::ofstream(t / "merges.txt") << "#version\na b\n";
  }
  EXPECT_NE(error_of([&] { ClipTokenizer::load(t / "vocab.json"); }).find("repeated"),
            std::string::npos);
  EXPECT_NE(error_of([&] { ClipTokenizer::load(t.dir.string()); }).find("vocab.json"),
            std::string::npos);
}

TEST(ClipTextModel, ConfigFromJson) {
  ClipTextConfig d;
  EXPECT_EQ(d.hidden_size, 768);
  EXPECT_EQ(d.num_hidden_layers, 12);
  EXPECT_EQ(d.vocab_size, 49408);
  auto c = ClipTextConfig::from_json(nlohmann::json::parse(
      R"({"text_config": {"hidden_size": 64, "num_attention_heads": 4, "hidden_act": "gelu"}, "vision_config": {}})"));
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 3072);
  EXPECT_EQ(c.hidden_act, "gelu");
  EXPECT_NE(error_of([] {
              ClipTextConfig::from_json(nlohmann::json::parse(R"({"hidden_size": 100})"));
            }).find("not divisible"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              ClipTextConfig::from_json(nlohmann::json::parse(R"({"hidden_act": "relu"})"));
            }).find("hidden_act 'relu'"),
            std::string::npos);
}

TEST(ClipTextModel, MatchesTorchTwin) {
  const std::string& d = fixtures();
  if (d.empty()) GTEST_SKIP() << "python3-torch is not available to /usr/bin/python3";
  ClipTextConfig c = ClipTextConfig::load(d + "/text_small.json");
  ASSERT_EQ(c.hidden_size, 64);
  Array ids = load_npy(d + "/text_small_ids.npy");
  Array ref = load_npy(d + "/text_small_out.npy");
  ASSERT_EQ(ids.shape, (std::vector<int64_t>{4, 77}));
  std::vector<int64_t> i64 = ids.to_i64();
  std::vector<int> iv(i64.begin(), i64.end());
  std::vector<float> want = ref.to_f32();
  auto be = make_cpu_backend();
  for (const char* file : {"text_small.safetensors", "text_small.pth"}) {
    ClipTextModel m(c, *be);
    m.load_file(d + "/" + file);
    std::vector<float> got = m.forward(iv, 4, 77);
    ASSERT_EQ(got.size(), want.size());
    double max_err = 0, max_ref = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_TRUE(std::isfinite(got[i]));
      max_err = std::max(max_err, std::abs(double(got[i]) - want[i]));
      max_ref = std::max(max_ref, std::abs(double(want[i])));
    }
    EXPECT_LE(max_err / max_ref, 1e-5) << file << ": max abs err " << max_err;
    // Causality: a prefix of the sequence gives the same first positions.
    std::vector<float> pre = m.forward(std::vector<int>(iv.begin(), iv.begin() + 10), 1, 10);
    for (size_t i = 0; i < pre.size(); ++i) ASSERT_NEAR(pre[i], got[i], 1e-5) << i;
  }
  // The tokenizer + model pipeline equals the reference for prompt 0 ("a photo of a cat").
  ClipTextModel m(c, *be);
  m.load_file(d + "/text_small.safetensors");
  std::vector<float> e = clip_encode_prompts(tok(), m, {"a photo of a cat"});
  ASSERT_EQ(e.size(), size_t(77 * 64));
  for (size_t i = 0; i < e.size(); ++i) ASSERT_NEAR(e[i], want[i], 1e-4) << i;
}

TEST(ClipTextModel, BadWeights) {
  const std::string& d = fixtures();
  if (d.empty()) GTEST_SKIP() << "python3-torch is not available to /usr/bin/python3";
  auto be = make_cpu_backend();
  ClipTextConfig c = ClipTextConfig::load(d + "/text_small.json");
  NamedArrays sd = load_weights(d + "/text_small.safetensors");
  {  // a config with fewer layers than the file
    ClipTextConfig c1 = c;
    c1.num_hidden_layers = 1;
    ClipTextModel m(c1, *be);
    EXPECT_NE(error_of([&] { m.load(sd, "w"); }).find("unexpected text-model tensor"),
              std::string::npos);
  }
  {  // a wider config: shapes differ
    ClipTextConfig c2 = c;
    c2.hidden_size = 128;
    ClipTextModel m(c2, *be);
    EXPECT_NE(
        error_of([&] { m.load(sd, "w"); }).find("has shape [49408, 64], expected [49408, 128]"),
        std::string::npos);
  }
  ClipTextModel m(c, *be);
  NamedArrays missing;
  for (auto& kv : sd)
    if (kv.first != "text_model.final_layer_norm.bias") missing.push_back(kv);
  EXPECT_NE(error_of([&] {
              m.load(missing, "w");
            }).find("missing text-model tensor text_model.final_layer_norm.bias"),
            std::string::npos);
  m.load(sd, "w");
  EXPECT_NE(error_of([&] {
              m.forward({0, 49408}, 1, 2);
            }).find("token id 49408"),
            std::string::npos);
  EXPECT_NE(error_of([&] { m.forward(std::vector<int>(78, 0), 1, 78); }).find("exceed"),
            std::string::npos);
}

TEST(ClipMscocoFeatures, ExtractLayout) {
  const std::string& d = fixtures();
  if (d.empty()) GTEST_SKIP() << "python3-torch is not available to /usr/bin/python3";
  TempDir t;
  fs::create_directories(t / "imgs");
  // Solid images (LANCZOS keeps a solid colour), non-square, ids out of order in the JSON.
  struct Im {
    int id, w, h;
    uint8_t r, g, b;
  };
  std::vector<Im> ims = {
      {42, 40, 24, 255, 0, 51}, {7, 16, 32, 0, 127, 255}, {100, 24, 24, 10, 20, 30}};
  nlohmann::json j = {{"images", nlohmann::json::array()},
                      {"annotations", nlohmann::json::array()}};
  for (const auto& m : ims) {
    Image im(m.w, m.h, 3);
    for (size_t p = 0; p < im.px.size(); p += 3) {
      im.px[p] = m.r;
      im.px[p + 1] = m.g;
      im.px[p + 2] = m.b;
    }
    write_png(t / cat("imgs/", m.id, ".png"), im);
    j["images"].push_back({{"id", m.id}, {"file_name", cat(m.id, ".png")}});
  }
  j["annotations"] = {{{"image_id", 42}, {"caption", "A red thing."}},
                      {{"image_id", 7}, {"caption", "Blue sky"}},
                      {{"image_id", 42}, {"caption", "second caption"}},
                      {{"image_id", 100}, {"caption", "dark"}}};
  { std::ofstream(t / "caps.json") << j.dump(); }
  auto be = make_cpu_backend();
  ClipTextModel clip(ClipTextConfig::load(d + "/text_small.json"), *be);
  clip.load_file(d + "/text_small.safetensors");
  MscocoExtractOptions o;
  o.images_dir = t / "imgs";
  o.captions_json = t / "caps.json";
  o.out_dir = t / "out";
  o.resolution = 16;
  o.batch = 2;
  int calls = 0;
  // moments[b, c, y, x] = image[b, c % 3, 8y, 8x] + c
  auto fn = [&](const Array& x) {
    ++calls;
    const int64_t B = x.shape[0];
    Array m(DType::F32, {B, 8, 2, 2});
    for (int64_t b = 0; b < B; ++b)
      for (int c = 0; c < 8; ++c)
        for (int y = 0; y < 2; ++y)
          for (int xx = 0; xx < 2; ++xx)
            m.as<float>()[((b * 8 + c) * 2 + y) * 2 + xx] =
                x.as<float>()[((b * 3 + c % 3) * 16 + 8 * y) * 16 + 8 * xx] + float(c);
    return m;
  };
  MscocoExtractResult r = extract_mscoco_features(o, fn, tok(), clip);
  EXPECT_EQ(r.images, 3);
  EXPECT_EQ(r.captions, 4);
  EXPECT_EQ(calls, 2);
  // Sorted ids: 0 -> 7, 1 -> 42, 2 -> 100.
  const int order[3] = {1, 0, 2};
  const std::vector<std::vector<std::string>> caps = {
      {"Blue sky"}, {"A red thing.", "second caption"}, {"dark"}};
  for (int i = 0; i < 3; ++i) {
    const Im& m = ims[size_t(order[i])];
    Array mo = load_npy(t / cat("out/train/", i, ".npy"));
    ASSERT_EQ(mo.shape, (std::vector<int64_t>{8, 2, 2}));
    const uint8_t rgb[3] = {m.r, m.g, m.b};
    for (int c = 0; c < 8; ++c)
      EXPECT_NEAR(mo.as<float>()[c * 4 + 3], rgb[c % 3] / 127.5f - 1.f + c, 1e-6) << i << " " << c;
    std::vector<float> want = clip_encode_prompts(tok(), clip, caps[size_t(i)]);
    for (size_t k = 0; k < caps[size_t(i)].size(); ++k) {
      Array cx = load_npy(t / cat("out/train/", i, "_", k, ".npy"));
      ASSERT_EQ(cx.shape, (std::vector<int64_t>{77, 64}));
      std::vector<float> v = cx.to_f32();
      for (size_t q = 0; q < v.size(); ++q) ASSERT_EQ(v[q], want[k * v.size() + q]);
    }
    EXPECT_FALSE(fs::exists(t / cat("out/train/", i, "_", caps[size_t(i)].size(), ".npy")));
  }
  Array e = load_npy(t / "out/empty_context.npy");
  EXPECT_EQ(e.to_f32(), clip_encode_prompts(tok(), clip, {""}));
  // A caption for an unknown image is an error naming it.
  j["annotations"].push_back({{"image_id", 5}, {"caption", "x"}});
  { std::ofstream(t / "caps.json") << j.dump(); }
  EXPECT_NE(
      error_of([&] { extract_mscoco_features(o, fn, tok(), clip); }).find("unknown image id 5"),
      std::string::npos);
}
