// The request checks the C API, `uvit serve` and `uvit sample` share (src/pipeline/
// request_check.cpp): field_range's ranges and their messages (hand-written), every field's check
// naming the field through the front end's FieldNames, the flow-only options, the unset values
// passing, and the random seed's range.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "uvit/config.hpp"
#include "uvit/pipeline.hpp"

using namespace uvit;

namespace {

// The message of check_field(field, v, "NAME"), "" when it passes; the error's field is `field`.
std::string field_error(const char* field, double v) {
  try {
    check_field(field, v, "NAME");
  } catch (const RequestError& e) {
    EXPECT_EQ(e.field, field);
    return e.what();
  }
  return "";
}

// The message of check_request, "" when it passes; names are "api." + field.
std::string request_error(const Config& c, const GenerationRequest& r,
                          std::string* field = nullptr) {
  try {
    check_request(c, r, [](const char* f) { return std::string("api.") + f; });
  } catch (const RequestError& e) {
    if (field) *field = e.field;
    return e.what();
  }
  return "";
}

Config flow_preset() {
  return load_config(std::string(UVIT_TEST_SOURCE) + "/configs/flow_dit_tiny.json");
}

}  // namespace

TEST(RequestCheck, RangesAndTheirMessages) {
  EXPECT_EQ(field_error("cfg_interval", 1.5), "NAME must be in [0, 1], got 1.5");
  EXPECT_EQ(field_error("cfg_interval", -1), "NAME must be in [0, 1], got -1");
  EXPECT_EQ(field_error("cfg_interval", 0), "");
  EXPECT_EQ(field_error("cfg_interval", 1), "");
  EXPECT_EQ(field_error("shift", 0), "NAME must be > 0, got 0");
  EXPECT_EQ(field_error("shift", NAN), "NAME must be > 0, got nan");
  EXPECT_EQ(field_error("shift", 2e6), "NAME must be in (0, 1000000], got 2e+06");
  EXPECT_EQ(field_error("shift", 1e6), "");
  EXPECT_EQ(field_error("atol", -1e-4), "NAME must be > 0, got -0.0001");
  EXPECT_EQ(field_error("guidance_w", 0.5), "NAME must be in [1, 100], got 0.5");
  EXPECT_EQ(field_error("guidance_w", 1), "");
  EXPECT_EQ(field_error("guidance_w", INFINITY), "NAME must be in [1, 100], got inf");
  EXPECT_EQ(field_error("cfg_scale", 0), "");
  EXPECT_EQ(field_error("cfg_scale", 99.5), "NAME must be in [0, 99], got 99.5");
  EXPECT_EQ(field_error("cfg_power", -2), "NAME must be in [0, 1000], got -2");
  EXPECT_EQ(field_error("skip_cache", 0), "NAME must be in [1, 1048576], got 0");
  EXPECT_EQ(field_error("skip_cache", 2.5), "NAME must be an integer, got 2.5");
  EXPECT_EQ(field_error("skip_cache", 3), "");
  EXPECT_EQ(field_error("zero_init_steps", 1001), "NAME must be in [0, 1000], got 1001");
  EXPECT_EQ(field_error("zero_init_steps", 0), "");
  EXPECT_TRUE(field_range("zero_init_steps").integer);
  EXPECT_TRUE(field_range("rtol").lo_open);
  EXPECT_THROW(field_range("steps"), Error);  // no "unset" value outside a range: not a range field
}

TEST(RequestCheck, EveryFieldIsNamedByTheFrontEnd) {
  const Config eps = load_config("fmnist_uvit_tiny"), flow = flow_preset();
  EXPECT_EQ(request_error(eps, GenerationRequest{}), "");  // the unset values pass
  EXPECT_EQ(request_error(flow, GenerationRequest{}), "");
  struct Case {
    const char* field;
    void (*set)(GenerationRequest&);
    const char* want;
  };
  const Case cases[] = {
      {"n", [](GenerationRequest& r) { r.n = 0; }, "api.n must be >= 1, got 0"},
      {"steps", [](GenerationRequest& r) { r.steps = -1; }, "api.steps must be >= 0"},
      {"batch", [](GenerationRequest& r) { r.batch = -2; }, "api.batch must be >= 0"},
      {"seed", [](GenerationRequest& r) { r.seed = -2; }, "api.seed must be >= 0 or -1 (random)"},
      {"guidance_channels", [](GenerationRequest& r) { r.guidance_channels = -2; },
       "api.guidance_channels must be >= 1"},
      {"guidance_w", [](GenerationRequest& r) { r.guidance_w = 0.5; },
       "api.guidance_w must be in [1, 100], got 0.5"},
      {"cfg_scale", [](GenerationRequest& r) { r.cfg_scale = -2; },
       "api.cfg_scale must be in [0, 99], got -2"},
      {"cfg_power", [](GenerationRequest& r) { r.cfg_power = NAN; },
       "api.cfg_power must be in [0, 1000], got nan"},
      {"skip_cache", [](GenerationRequest& r) { r.skip_cache = -1; },
       "api.skip_cache must be in [1, 1048576], got -1"},
      {"shift", [](GenerationRequest& r) { r.shift = -1; }, "api.shift must be > 0, got -1"},
      {"cfg_interval", [](GenerationRequest& r) { r.cfg_interval = 1.5; },
       "api.cfg_interval must be in [0, 1], got 1.5"},
      {"atol", [](GenerationRequest& r) { r.atol = NAN; }, "api.atol must be > 0, got nan"},
      {"rtol", [](GenerationRequest& r) { r.rtol = 2e6; }, "api.rtol must be in (0, 1000000]"},
      {"zero_init_steps", [](GenerationRequest& r) { r.zero_init_steps = 1001; },
       "api.zero_init_steps must be in [0, 1000], got 1001"},
      {"sampler", [](GenerationRequest& r) { r.sampler = "LMS"; },
       "api.sampler: sampler 'lms' is not a flow sampler"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field);
    GenerationRequest r;
    c.set(r);
    std::string field;
    const std::string msg = request_error(flow, r, &field);
    EXPECT_EQ(msg.rfind(c.want, 0), 0u) << msg;
    EXPECT_EQ(field, c.field);
  }
  // Flow options on an eps preset: refused naming the field; 0 zero-init steps is every preset's.
  GenerationRequest r;
  r.cfg_interval = 0;
  std::string field;
  EXPECT_EQ(request_error(eps, r, &field),
            "api.cfg_interval applies to flow presets only; fmnist_uvit_tiny is not one");
  EXPECT_EQ(field, "cfg_interval");
  EXPECT_EQ(request_error(flow, r), "");
  r = GenerationRequest{};
  r.zero_init_steps = 0;
  EXPECT_EQ(request_error(eps, r), "");
  r.zero_init_steps = 2;
  EXPECT_EQ(request_error(eps, r),
            "api.zero_init_steps applies to flow presets only; fmnist_uvit_tiny is not one");
  // A flow sampler on an eps preset, and the names of the other family.
  r = GenerationRequest{};
  r.sampler = "Euler a";
  EXPECT_EQ(request_error(eps, r), "");
  EXPECT_EQ(request_error(flow, r), "");
  r.sampler = "dopri5";
  EXPECT_EQ(request_error(eps, r, &field),
            "api.sampler: 'dopri5' is a flow sampler (flow presets); config fmnist_uvit_tiny "
            "(schedule continuous_vp) takes euler-maruyama, euler-ode, dpm-solver, dpm-solver++, "
            "dpm-solver++2m, ddpm, ddim");
  EXPECT_EQ(field, "sampler");
  r.sampler = "lms";
  EXPECT_EQ(request_error(eps, r).rfind("api.sampler: unknown sampler 'lms'", 0), 0u);
  // Without names: the member names; resolve_generation checks the same.
  r = GenerationRequest{};
  r.steps = -3;
  try {
    resolve_generation(eps, r);
    ADD_FAILURE() << "steps -3 passed";
  } catch (const RequestError& e) {
    EXPECT_EQ(std::string(e.what()), "steps must be >= 0 (0: the preset's), got -3");
  }
}

TEST(RequestCheck, RandomSeedsArePrintableAndVary) {
  uint64_t first = random_seed();
  bool varied = false;
  for (int i = 0; i < 20; ++i) {
    const uint64_t s = random_seed();
    EXPECT_LT(s, uint64_t(1) << 32);
    varied = varied || s != first;
  }
  EXPECT_TRUE(varied);
}
