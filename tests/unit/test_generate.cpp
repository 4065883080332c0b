// generate(): a run split into pieces with GenerateOptions::first_index equals the whole run, for a
// stochastic sampler with guidance (what `uvit eval` relies on for chunking and resume).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/generate.hpp"
#include "uvit/model.hpp"

using namespace uvit;

TEST(Generate, PiecesWithFirstIndexEqualTheWholeRun) {
  const std::filesystem::path p =
      std::filesystem::temp_directory_path() / "uvit_generate_tiny.json";
  FILE* f = std::fopen(p.c_str(), "w");
  ASSERT_TRUE(f);
  std::fputs(R"({"name": "tiny", "dataset": {"cfg": true},
    "nnet": {"name": "uvit", "img_size": 8, "patch_size": 2, "in_chans": 1, "embed_dim": 32,
             "depth": 2, "num_heads": 2, "mlp_ratio": 2, "qkv_bias": false,
             "mlp_time_embed": false, "num_classes": 4, "conv": true}})",
             f);
  std::fclose(f);
  const Config c = load_config(p.string());
  auto be = make_cpu_backend();
  UViT net(c.net, *be);
  net.init_random(3);
  GenerateOptions o;
  o.sampler = "euler-maruyama";
  o.steps = 4;
  o.cfg_scale = 0.5;
  o.seed = 9;
  const std::vector<int> labels = {0, 1, 2, 0, 1};
  const std::vector<float> whole = generate(net, c, o, 5, labels);
  o.first_index = 0;
  std::vector<float> a = generate(net, c, o, 2, {0, 1});
  o.first_index = 2;
  const std::vector<float> b = generate(net, c, o, 3, {2, 0, 1});
  a.insert(a.end(), b.begin(), b.end());
  EXPECT_EQ(a, whole);
  o.first_index = 1;  // a shifted piece draws other noise
  EXPECT_NE(generate(net, c, o, 2, {0, 1}), std::vector<float>(whole.begin(), whole.begin() + 128));
  std::filesystem::remove(p);
}
