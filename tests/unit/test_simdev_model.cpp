// The device-side glue through the simulated device (docs/gpu.md, "The simulated device"): every
// network's forward and gradients, the samplers, training with EMA, checkpoints and resume, the
// encoders' staged loads and the FID Inception run on a backend whose memory the host cannot
// read, and give the CPU's results: bit for bit where the order of operations is the CPU's.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "model_compare.hpp"
#include "uvit/autoencoder.hpp"
#include "uvit/backend.hpp"
#include "uvit/diffusion.hpp"
#include "uvit/generate.hpp"
#include "uvit/inception.hpp"
#include "uvit/model.hpp"

namespace fs = std::filesystem;
using namespace uvit;
using namespace uvit::test;

class SimDevModel : public ::testing::TestWithParam<int> {};

// Forward (training and inference) and every gradient, fp32 and (the first config, where the CPU
// has the units) bf16, equal to the CPU backend's of the same precision.
TEST_P(SimDevModel, ForwardAndGradientsAreTheCpus) {
  const Config c = config_from(kConfigs[GetParam()]);
  std::vector<std::string> precs = {"fp32"};
  if (cpu_has_bf16() && GetParam() == 0) precs.push_back("bf16");
  for (const std::string& prec : precs) {
    SCOPED_TRACE(c.config_name + " " + prec);
    auto cpu = make_backend("cpu", prec), dev = make_backend("simdev", prec);
    for (bool train : {true, false}) {
      const Result a = run_net(*cpu, c, 2, train), b = run_net(*dev, c, 2, train);
      EXPECT_EQ(b.out, a.out) << "train " << train;
      EXPECT_EQ(b.grads, a.grads) << "train " << train;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(SimDev, SimDevModel, ::testing::Range(0, int(std::size(kConfigs))));

// Every sampler of the VP schedule with guidance, and the network loaded from a file.
TEST(SimDevSample, EverySamplerIsTheCpus) {
  std::string json = kConfigs[0];  // with label dropout, so that it has a null class
  json.insert(1, R"("dataset": {"cfg": true}, )");
  const Config c = config_from(json.c_str());
  auto cpu = make_cpu_backend(), dev = make_backend("simdev");
  UViT a(c.net, *cpu, null_class(c)), b(c.net, *dev, null_class(c));
  a.init_random(2);
  const fs::path file = fs::temp_directory_path() / "uvit_simdev_sample.safetensors";
  a.save_weights(file.string(), {});
  b.load_file(file.string());
  fs::remove(file);
  for (const std::string& sampler : sampler_names()) {
    SCOPED_TRACE(sampler);
    GenerateOptions o;
    o.sampler = sampler;
    o.steps = 3;
    o.cfg_scale = 0.7;
    o.seed = 4;
    o.mini_batch = 2;
    const std::vector<int> labels = {0, 4, 9};
    EXPECT_EQ(generate(b, c, o, 3, labels), generate(a, c, o, 3, labels));
  }
}

// Three training steps with EMA and AdamW, saving, resuming after two: the CPU's losses and
// parameters.
TEST(SimDevTrain, StepsSaveAndResumeAreTheCpus) {
  const Config c = train_config();
  auto data = std::make_shared<NoiseDataset>();
  const fs::path root = fs::temp_directory_path() / "uvit_simdev_train";
  fs::remove_all(root);
  auto cpu = make_cpu_backend(), dev = make_backend("simdev");
  const auto [lc, pc] = train_run(c, *cpu, data, (root / "cpu").string(), 3, false);
  const auto [ld, pd] = train_run(c, *dev, data, (root / "dev").string(), 3, false);
  EXPECT_EQ(ld, lc);
  EXPECT_EQ(pd, pc);
  train_run(c, *dev, data, (root / "resumed").string(), 2, false);
  const auto [lr, pr] = train_run(c, *dev, data, (root / "resumed").string(), 3, true);
  EXPECT_EQ(pr, pc);
  for (const char* f : {"nnet.safetensors", "nnet_ema.safetensors", "train_state.safetensors"}) {
    const auto read = [&](const std::string& run) {
      std::ifstream in(root / run / f, std::ios::binary);
      return std::string(std::istreambuf_iterator<char>(in), {});
    };
    EXPECT_EQ(read("dev"), read("cpu")) << f;
    EXPECT_EQ(read("resumed"), read("cpu")) << f;
  }
  fs::remove_all(root);
}

// The FID Inception's device path (the weights folded in a host block and uploaded; images in
// chunks of kDeviceBatch): within docs/fid.md's 1e-4 of the CPU's one image at a time.
TEST(SimDevInception, MatchesTheCpu) {
  const NamedArrays sd = FidInception::random_state_dict(7);
  auto cpu = make_cpu_backend(), dev = make_backend("simdev");
  const FidInception ref(sd, *cpu, "random"), net(sd, *dev, "random");
  std::mt19937 g(11);
  const int B = 2, H = 40, W = 30, C = 3;
  std::vector<uint8_t> im(size_t(B) * H * W * C);
  for (auto& v : im) v = uint8_t(g() % 256);
  std::vector<float> f(size_t(B) * FidInception::kDims), rf(f.size());
  std::vector<float> l(size_t(B) * FidInception::kClasses), rl(l.size());
  ref.forward_u8(im.data(), B, H, W, C, rf.data(), rl.data(), nullptr);
  net.forward_u8(im.data(), B, H, W, C, f.data(), l.data(), nullptr);
  EXPECT_LE(rel(f, rf), 1e-4);
  EXPECT_LE(rel(l, rl), 1e-4);
}
