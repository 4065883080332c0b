// What a backend says about itself that host code acts on: whether its memory is the host's
// (host_addressable, behind ParamStage::host_memory), and the UVIT_ATTENTION check every build
// makes when a backend is made (src/backend/attention_mode.hpp).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <utility>

#include "backend/attention_mode.hpp"
#include "error_of.hpp"
#include "models/param_stage.hpp"
#include "uvit/backend.hpp"

using namespace uvit;

TEST(BackendCaps, HostAddressableIsTheCpusAlone) {
  const auto cpu = make_backend("cpu");
  EXPECT_TRUE(cpu->host_addressable());
  EXPECT_TRUE(ParamStage::host_memory(*cpu));
  // The simulated device stands for a GPU: host code must take its device path.
  const auto sim = make_backend("simdev");
  EXPECT_FALSE(sim->host_addressable());
  EXPECT_FALSE(ParamStage::host_memory(*sim));
}

namespace {
// UVIT_ATTENTION set for one scope (unset after: the other tests run without it).
struct AttentionEnv {
  explicit AttentionEnv(const char* v) { setenv("UVIT_ATTENTION", v, 1); }
  ~AttentionEnv() { unsetenv("UVIT_ATTENTION"); }
};
}  // namespace

TEST(BackendCaps, AttentionModeNamesAreTakenEverywhere) {
  const std::pair<const char*, AttentionMode> names[] = {
      {"", AttentionMode::Auto},       {"auto", AttentionMode::Auto},
      {"flash", AttentionMode::Flash}, {"wmma", AttentionMode::Fused},
      {"fused", AttentionMode::Fused}, {"unfused", AttentionMode::Unfused},
      {"cudnn", AttentionMode::Cudnn}};
  for (const auto& [v, mode] : names) {
    const AttentionEnv env(v);
    EXPECT_EQ(attention_mode(), mode) << v;
    // A known name on the CPU: accepted, without effect.
    EXPECT_EQ(uvit_test::error_of([] { make_backend("cpu"); }), "(no error)") << v;
  }
}

TEST(BackendCaps, AttentionModeTypoIsRefusedOnTheCpu) {
  const AttentionEnv env("garbage");
  const std::string want =
      "UVIT_ATTENTION=garbage: not an attention kernel (auto, flash, wmma or fused, unfused, "
      "cudnn; docs/gpu.md)";
  EXPECT_EQ(uvit_test::error_of([] { make_backend("cpu"); }), want);
  EXPECT_EQ(uvit_test::error_of([] { make_backend("simdev"); }), want);
  EXPECT_EQ(uvit_test::error_of([] { attention_mode(); }), want);
}
