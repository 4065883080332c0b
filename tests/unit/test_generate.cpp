// generate(): a run split into pieces with GenerateOptions::first_index equals the whole run, for a
// stochastic sampler with guidance (what `uvit eval` relies on for chunking and resume); one
// sampling plan per request, also through the Pipeline (docs/memory.md, "Host memory").
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>

#include "diffusion/sampling_plan.hpp"
#include "temp_dir.hpp"
#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/generate.hpp"
#include "uvit/io.hpp"
#include "uvit/model.hpp"
#include "uvit/pipeline.hpp"

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

namespace {
const char* kTinyClassConfig = R"({"name": "tiny", "dataset": {"cfg": true},
    "sample": {"sample_steps": 3, "algorithm": "dpm_solver", "cfg": true, "scale": 0.5,
               "mini_batch_size": 2},
    "nnet": {"name": "uvit", "img_size": 8, "patch_size": 2, "in_chans": 1, "embed_dim": 32,
             "depth": 2, "num_heads": 2, "mlp_ratio": 2, "qkv_bias": false,
             "mlp_time_embed": false, "num_classes": 4, "conv": true}})";
// The tiny class-conditional network above, random, with its config written to d/tiny.json.
struct TinyClassNet {
  explicit TinyClassNet(const uvit_test::TempDir& d) : path(d / "tiny.json") {
    FILE* f = std::fopen(path.c_str(), "w");
    if (!f) throw std::runtime_error("cannot write " + path);
    std::fputs(kTinyClassConfig, f);
    std::fclose(f);
    c = load_config(path);
    net = std::make_unique<UViT>(c.net, *be);
    net->init_random(5);
  }
  std::string path;
  Config c;
  std::unique_ptr<Backend> be = make_cpu_backend();
  std::unique_ptr<UViT> net;
};
}  // namespace

// The pipeline plans the sampling buffers once per request (the early check that refuses a huge n
// is the plan generate() samples in), and samples what generate() alone samples.
TEST(Pipeline, OneSamplingPlanPerRequest) {
  uvit_test::TempDir d("uvit_pipeline_plan");
  TinyClassNet t(d);
  save_safetensors(d / "w.safetensors", t.net->export_weights());

  PipelineOptions po;
  po.config = t.path;
  po.weights = d / "w.safetensors";
  po.identify = false;
  Pipeline pipe(po);
  GenerationRequest r;
  r.n = 5;  // three mini-batches of 2
  r.classes = {1, 2};
  r.seed = 11;
  r.keep_latents = true;
  const int64_t before = SamplingBuffers::made();
  const GenerationResult res = pipe.generate(r);
  EXPECT_EQ(SamplingBuffers::made() - before, 1);
  ASSERT_EQ(res.images.size(), 5u);

  GenerateOptions o;
  o.seed = 11;
  const int64_t direct = SamplingBuffers::made();
  EXPECT_EQ(generate(*t.net, t.c, o, 5, {1, 2, 1, 2, 1}), res.latents);
  EXPECT_EQ(SamplingBuffers::made() - direct, 1);
}

// Buffers planned for other options are refused rather than sampled in (another mini-batch, or
// guidance the buffers were not sized for).
TEST(Generate, PlannedBuffersMustMatchTheOptions) {
  uvit_test::TempDir d("uvit_generate_plan");
  TinyClassNet t(d);
  Network& net = *t.net;
  const Config& c = t.c;
  GenerateOptions o;
  o.seed = 2;
  const GenerateOptions planned_for = with_preset_defaults(c, o);
  const std::vector<int> labels = {0, 1, 2};
  auto buffers = planned_sampling_buffers(net, c, planned_for, 3);
  // The options as given: generate() applies the same defaults, so the plan fits.
  EXPECT_EQ(generate(*buffers, net, c, o, 3, labels), generate(net, c, o, 3, labels));
  o.mini_batch = 1;
  EXPECT_THROW(generate(*buffers, net, c, o, 3, labels), Error);
  o.mini_batch = 0;
  o.cfg_scale = 0;
  EXPECT_THROW(generate(*buffers, net, c, o, 3, labels), Error);
  EXPECT_THROW(generate(*buffers, net, c, GenerateOptions{}, 2, {0, 1}), Error);
}
