// PNG generation metadata: the A1111 `parameters` text (quoting, prompt and negative prompt lines,
// key order) read back by our port of parse_generation_parameters, the uvit-params record, the
// SHA-256 against published vectors, class name lookup and A1111 sampler spellings.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "temp_dir.hpp"
#include "uvit/class_names.hpp"
#include "uvit/error.hpp"
#include "uvit/image.hpp"
#include "uvit/io.hpp"
#include "uvit/metadata.hpp"
#include "uvit/pipeline.hpp"

using namespace uvit;

namespace {

std::map<std::string, std::string> as_map(
    const std::vector<std::pair<std::string, std::string>>& v) {
  return {v.begin(), v.end()};
}

ImageParams sample_params() {
  ImageParams p;
  p.prompt = "a red, round: apple\non two lines";
  p.negative_prompt = "blurry";
  p.sampler = "dpm-solver++";
  p.steps = 50;
  p.guidance_w = 1.4;
  p.seed = 1234;
  p.index = 3;
  p.width = 256;
  p.height = 128;
  p.model = "mscoco_uvit_small";
  p.weights = "mscoco, v2.pth";  // a comma: quoted
  p.weights_sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  p.autoencoder = "autoencoder_kl.pth";
  p.schedule = "discrete_sd";
  return p;
}

}  // namespace

TEST(Metadata, ParametersTextHasA1111Layout) {
  const std::string t = a1111_parameters(sample_params());
  const std::string want_start =
      "a red, round: apple\non two lines\nNegative prompt: blurry\nSteps: 50, Sampler: "
      "dpm-solver++, CFG scale: 1.4, UViT scale: 0.4, Seed: 1234, Index: 3, Size: 256x128, "
      "Model hash: 0123456789, Model: mscoco_uvit_small, Weights: \"mscoco, v2.pth\", VAE: "
      "autoencoder_kl.pth, Schedule type: discrete_sd, RNG: philox, Version: ";
  EXPECT_EQ(t.substr(0, want_start.size()), want_start);
  // The version value holds no ',', ':' or newline, so it is written bare.
  EXPECT_EQ(t.find('"', want_start.size()), std::string::npos) << t;
}

TEST(Metadata, ParserReadsBackWhatWeWrite) {
  const auto f = as_map(parse_a1111_parameters(a1111_parameters(sample_params())));
  EXPECT_EQ(f.at("Prompt"), "a red, round: apple\non two lines");
  EXPECT_EQ(f.at("Negative prompt"), "blurry");
  EXPECT_EQ(f.at("Steps"), "50");
  EXPECT_EQ(f.at("Sampler"), "dpm-solver++");
  EXPECT_EQ(f.at("CFG scale"), "1.4");
  EXPECT_EQ(f.at("UViT scale"), "0.4");
  EXPECT_EQ(f.at("Seed"), "1234");
  EXPECT_EQ(f.at("Index"), "3");
  EXPECT_EQ(f.at("Size-1"), "256");
  EXPECT_EQ(f.at("Size-2"), "128");
  EXPECT_EQ(f.at("Model hash"), "0123456789");
  EXPECT_EQ(f.at("Weights"), "mscoco, v2.pth");  // unquoted again
  EXPECT_EQ(f.at("RNG"), "philox");
  EXPECT_EQ(f.count("Class"), 0u);
}

TEST(Metadata, UnconditionalHasNoPromptLine) {
  ImageParams p = sample_params();
  p.prompt.clear();
  p.negative_prompt.clear();
  const std::string t = a1111_parameters(p);
  EXPECT_EQ(t.rfind("Steps: 50, ", 0), 0u) << t;
  const auto f = as_map(parse_a1111_parameters(t));
  EXPECT_EQ(f.at("Prompt"), "");
  EXPECT_EQ(f.at("Seed"), "1234");
}

TEST(Metadata, ParserFollowsA1111Rules) {
  // A last line with fewer than 3 pairs is part of the prompt.
  auto f = as_map(parse_a1111_parameters("hello\nSteps: 20, Seed: 1"));
  EXPECT_EQ(f.at("Prompt"), "hello\nSteps: 20, Seed: 1");
  EXPECT_EQ(f.count("Steps"), 0u);
  // Multi-line negative prompt, escaped quotes inside a quoted value, surrounding whitespace.
  f = as_map(parse_a1111_parameters(
      "  cat\nNegative prompt: ugly\nbad hands\nSteps: 20, Sampler: \"a, \\\"b\\\"\", Size: "
      "64x32  \n"));
  EXPECT_EQ(f.at("Prompt"), "cat");
  EXPECT_EQ(f.at("Negative prompt"), "ugly\nbad hands");
  EXPECT_EQ(f.at("Sampler"), "a, \"b\"");
  EXPECT_EQ(f.at("Size-1"), "64");
  EXPECT_EQ(f.at("Size-2"), "32");
  EXPECT_EQ(a1111_quote("plain"), "plain");
  EXPECT_EQ(a1111_quote("a:b"), "\"a:b\"");
  EXPECT_EQ(a1111_quote("x\ny"), "\"x\\ny\"");
}

TEST(Metadata, RecordIsJsonWithBasenamesOnly) {
  ImageParams p = sample_params();
  p.class_id = 207;
  p.prompt = "golden retriever";
  const auto j = nlohmann::json::parse(params_record(p));
  EXPECT_EQ(j.at("schema"), "uvit.image.params/v1");
  EXPECT_EQ(j.at("class"), 207);
  EXPECT_EQ(j.at("class_name"), "golden retriever");
  EXPECT_EQ(j.at("weights").at("name"), "mscoco, v2.pth");
  EXPECT_DOUBLE_EQ(j.at("guidance").at("w").get<double>(), 1.4);
  EXPECT_NEAR(j.at("guidance").at("s").get<double>(), 0.4, 1e-12);
  EXPECT_EQ(j.at("size"), nlohmann::json::array({256, 128}));
  EXPECT_EQ(j.at("generator").at("version"), version_string());
  const auto g = grid_metadata(p, 16);
  EXPECT_NE(g.at("parameters").find(", Batch size: 16, "), std::string::npos);
  EXPECT_EQ(base_name("/a/b/c.pth"), "c.pth");
  EXPECT_EQ(base_name("c.pth"), "c.pth");
}

TEST(Metadata, PngChunksRoundTrip) {
  uvit_test::TempDir tmp("uvit_meta");
  ImageParams p = sample_params();
  p.prompt = "café ☕";  // UTF-8: an iTXt chunk
  const Image im(4, 3, 3, 100);
  write_png(tmp / "a.png", im, png_metadata(p));
  const auto text = read_png_text(tmp / "a.png");
  EXPECT_EQ(text.at("parameters"), a1111_parameters(p));
  EXPECT_EQ(text.at("uvit-params"), params_record(p));
  EXPECT_EQ(as_map(parse_a1111_parameters(text.at("parameters"))).at("Prompt"), "café ☕");
}

TEST(Metadata, Sha256MatchesPublishedVectors) {
  uvit_test::TempDir tmp("uvit_sha");
  const auto sha = [&](const std::string& content) {
    std::ofstream(tmp / "f", std::ios::binary) << content;
    return file_sha256(tmp / "f");
  };
  // FIPS 180-2 examples.
  EXPECT_EQ(sha(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  EXPECT_THROW(file_sha256(tmp / "missing"), Error);
}

// The hash describes the file a reader loaded, or is refused (docs/evaluation.md, "The weights'
// SHA-256"): a file renamed over the path after the load (a training run's save), removed, or
// written in place.
TEST(Metadata, Sha256IsOfTheWeightsLoaded) {
  uvit_test::TempDir tmp("uvit_sha_loaded");
  const std::string w = tmp / "w.safetensors";
  const auto save = [&](const std::string& path, float v) {
    const float x[3] = {v, 0, 0};
    save_safetensors(path, {{"x", Array::from_f32({3}, x)}});
  };
  const auto refused = [&](const std::string& path) {
    try {
      file_sha256(path);
    } catch (const Error& e) {
      return std::string(e.what()) ==
             path + " changed while it was read (a training run saving it?); run again";
    }
    return false;
  };
  save(w, 1);
  const std::string a = file_sha256(w);  // never loaded: hashed as it is
  open_weights(w);
  EXPECT_EQ(file_sha256(w), a);
  save(tmp / "next.safetensors", 2);
  std::filesystem::rename(tmp / "next.safetensors", w);
  EXPECT_TRUE(refused(w));
  open_weights(w);  // loaded again: the new file's hash
  EXPECT_NE(file_sha256(w), a);
  std::filesystem::remove(w);
  EXPECT_TRUE(refused(w));
  save(w, 3);
  open_weights(w);
  std::ofstream(w, std::ios::binary | std::ios::app) << "more";  // the same inode, longer
  EXPECT_TRUE(refused(w));
}

TEST(ClassNames, LookupByIdNameAndSynonym) {
  const auto& t = class_table("fashion_mnist");
  ASSERT_EQ(t.size(), 10u);
  EXPECT_EQ(find_class(t, 10, "7"), 7);
  EXPECT_EQ(find_class(t, 10, "sneaker"), 7);
  EXPECT_EQ(find_class(t, 10, "  ANKLE boot "), 9);
  EXPECT_EQ(find_class(t, 10, "boot"), 9);  // a synonym
  EXPECT_EQ(find_class(t, 10, "10"), -1);
  EXPECT_EQ(find_class(t, 10, "99999999999999"), -1);
  EXPECT_EQ(find_class(t, 10, "zebra"), -1);
  EXPECT_EQ(find_class(t, 5, "sneaker"), -1);  // beyond the model's classes
  EXPECT_EQ(class_display_name(t, 0), "T-shirt/top");
  EXPECT_EQ(class_display_name(t, 10), "");
  const auto near = near_class_names(t, "snaeker", 2);
  ASSERT_FALSE(near.empty());
  EXPECT_EQ(near[0], "Sneaker");
  EXPECT_EQ(near_class_names(t, "shirt", 3).size(), 3u);  // T-shirt/top, t-shirt, Shirt ...
  EXPECT_TRUE(near_class_names(t, "zebra").empty());      // nothing close
  EXPECT_TRUE(class_table("celeba").empty());
  // ImageNet: 1000 classes in sorted-wnid order; ids, WordNet ids and any synonym.
  const auto& in = class_table("imagenet256_features");
  ASSERT_EQ(in.size(), 1000u);
  EXPECT_EQ(find_class(in, 1000, "golden retriever"), 207);
  EXPECT_EQ(find_class(in, 1000, "n02099601"), 207);
  EXPECT_EQ(find_class(in, 1000, "Tinca tinca"), 0);
  EXPECT_EQ(find_class(in, 1000, "toilet tissue"), 999);
  EXPECT_EQ(find_class(in, 1000, "crane"), 134);  // the bird; the machine (517) by id or wnid
  EXPECT_EQ(find_class(in, 1000, "n03126707"), 517);
  EXPECT_EQ(class_display_name(in, 88), "macaw");
  EXPECT_EQ(in[999].wnid, "n15075141");
  EXPECT_EQ(near_class_names(in, "golden retreiver", 1),
            std::vector<std::string>{"golden retriever"});
}

TEST(Samplers, A1111SpellingsMapToOurs) {
  EXPECT_EQ(canonical_sampler("DPM++ 2M"), "dpm-solver++2m");
  EXPECT_EQ(canonical_sampler("Euler a"), "euler-maruyama");
  EXPECT_EQ(canonical_sampler("Euler"), "euler-ode");
  EXPECT_EQ(canonical_sampler("k_euler"), "euler-ode");
  EXPECT_EQ(canonical_sampler("DDIM"), "ddim");
  EXPECT_EQ(canonical_sampler("DPM-Solver++"), "dpm-solver++");
  EXPECT_EQ(canonical_sampler(""), "");
  EXPECT_THROW(canonical_sampler("LMS"), Error);
}

TEST(Samplers, FlowPresetsMapA1111NamesToTheFlowSamplers) {
  EXPECT_EQ(canonical_sampler("Euler", true), "euler");
  EXPECT_EQ(canonical_sampler("k_euler", true), "euler");
  EXPECT_EQ(canonical_sampler("Euler a", true), "euler_maruyama");
  EXPECT_EQ(canonical_sampler("Heun", true), "heun");
  EXPECT_EQ(canonical_sampler("dopri5", true), "dopri5");
  EXPECT_EQ(canonical_sampler("euler_maruyama", true), "euler_maruyama");
  EXPECT_THROW(canonical_sampler("DPM++ 2M", true), Error);
  EXPECT_THROW(canonical_sampler("heun"), Error);  // not an eps sampler
}

TEST(Metadata, ExtraSamplerSettingsAreWrittenAndParsed) {
  ImageParams p;
  p.sampler = "euler";
  p.steps = 50;
  p.model = "fmnist_lightningdit_tiny";
  p.extra = {{"shift", "0.3"}, {"cfg_interval", "0.125"}};
  bool shift = false, interval = false;
  for (const auto& [k, v] : parse_a1111_parameters(a1111_parameters(p))) {
    if (k == "shift") shift = v == "0.3";
    if (k == "cfg_interval") interval = v == "0.125";
  }
  EXPECT_TRUE(shift);
  EXPECT_TRUE(interval);
  const auto j = nlohmann::json::parse(params_record(p));
  EXPECT_EQ(j["sampler"]["shift"], "0.3");
}
