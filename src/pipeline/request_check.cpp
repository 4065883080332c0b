// The checks of a GenerationRequest that the C API, `uvit serve` and `uvit sample` share
// (include/uvit/pipeline.hpp): the sampler options' ranges, the preset-level checks, and the
// random seed. Each front end names the fields its own way (FieldNames); docs/c_api.md,
// docs/serve.md.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <random>

#include "uvit/ascii.hpp"
#include "uvit/diffusion.hpp"
#include "uvit/flow.hpp"
#include "uvit/generate.hpp"
#include "uvit/pipeline.hpp"

namespace uvit {
namespace {

// The sampler options whose "unset" value lies outside their range (check_request says which).
// Upper ends: far beyond any use, so that a typo is refused instead of running for hours.
const FieldRange kRanges[] = {{"guidance_w", 1, 100, false, false},
                              {"cfg_scale", 0, 99, false, false},
                              {"cfg_power", 0, 1000, false, false},
                              {"cfg_interval", 0, 1, false, false},
                              {"shift", 0, 1e6, true, false},
                              {"atol", 0, 1e6, true, false},
                              {"rtol", 0, 1e6, true, false},
                              {"skip_cache", 1, 1 << 20, false, true},
                              {"zero_init_steps", 0, 1000, false, true}};

// 1000000 rather than 1e+06 for the integral ends of a range.
std::string number(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15) return cat(int64_t(v));
  return cat(v);
}

// The ε samplers config c's schedule takes (check_sampler_for's rule, asked name by name).
std::string eps_samplers_of(const Config& c, ScheduleKind kind) {
  std::string list;
  for (const std::string& n : sampler_names()) {
    try {
      check_sampler_for(n, kind, c.config_name);
      list += (list.empty() ? "" : ", ") + n;
    } catch (const Error&) {
    }
  }
  return list;
}

// The sampler's name, its family and the preset's schedule. The ε list names samplers that an
// adm or discrete preset refuses, so a flow sampler there gets the preset's own choices, and an
// A1111 name is said with the sampler it stands for.
void check_sampler_of(const Config& cfg, const std::string& typed, bool flow,
                      const std::string& field) {
  if (typed.empty()) return;
  const std::string lower = ascii_lower(typed);
  const std::string what =
      cat("config ", cfg.config_name, " (schedule ", cfg.json.value("schedule", "?"), ")");
  std::string sampler;
  try {
    sampler = canonical_sampler(typed, flow);
  } catch (const Error& e) {
    const std::vector<std::string> fl = flow_sampler_names();
    if (flow)  // say which preset refused, as the eps branch below does
      throw RequestError("sampler", cat(field, ": ", e.what(), "; config ", cfg.config_name,
                                        " is a flow preset (velocity objective, docs/flow.md)"));
    if (std::find(fl.begin(), fl.end(), lower) == fl.end())
      throw RequestError("sampler", cat(field, ": ", e.what()));
    throw RequestError(
        "sampler", cat(field, ": '", typed, "' is a flow sampler (flow presets); ", what, " takes ",
                       eps_samplers_of(cfg, schedule_for(cfg).kind())));
  }
  if (flow) return;
  try {
    check_sampler_for(sampler, schedule_for(cfg).kind(), what);
  } catch (const Error& e) {
    throw RequestError(
        "sampler", cat(field, ": ", lower == sampler ? "" : cat("'", typed, "' is ", sampler, ": "),
                       e.what()));
  }
}

}  // namespace

const FieldRange& field_range(const char* field) {
  for (const FieldRange& r : kRanges)
    if (std::strcmp(r.field, field) == 0) return r;
  fail("field_range: no range for field '", field, "'");  // a bug, not bad input
}

void check_field(const char* field, double v, const std::string& name) {
  const FieldRange& r = field_range(field);
  const bool low = r.lo_open ? !(v > r.lo) : !(v >= r.lo);  // NaN is low
  if (!low && v <= r.hi && (!r.integer || v == std::floor(v))) return;
  if (r.integer && !low && v <= r.hi)
    throw RequestError(field, cat(name, " must be an integer, got ", v));
  if (r.lo_open && low)
    throw RequestError(field, cat(name, " must be > ", number(r.lo), ", got ", v));
  throw RequestError(field, cat(name, " must be in ", r.lo_open ? "(" : "[", number(r.lo), ", ",
                                number(r.hi), "], got ", v));
}

void check_request(const Config& cfg, const GenerationRequest& r, const FieldNames& names) {
  const auto name = [&](const char* f) { return names ? names(f) : std::string(f); };
  const auto need = [&](bool ok, const char* f, const auto&... msg) {
    if (!ok) throw RequestError(f, cat(name(f), msg...));
  };
  need(r.n >= 1, "n", " must be >= 1, got ", r.n);
  need(r.steps >= 0, "steps", " must be >= 0 (0: the preset's), got ", r.steps);
  need(r.batch >= 0, "batch", " must be >= 0 (0: the preset's), got ", r.batch);
  need(r.seed >= -1, "seed", " must be >= 0 or -1 (random), got ", r.seed);
  need(r.guidance_channels >= -1, "guidance_channels",
       " must be >= 1 (0: the network's, -1: all), got ", r.guidance_channels);
  // Each sampler option counts when it is not its "unset" value (pipeline.hpp).
  const bool flow = is_flow(cfg);
  const auto option = [&](const char* f, double v, bool set, bool flow_only = false) {
    if (!set) return;
    check_field(f, v, name(f));
    need(flow || !flow_only, f, " applies to flow presets only; ", cfg.config_name, " is not one");
  };
  option("guidance_w", r.guidance_w, !(r.guidance_w < 0));
  option("cfg_scale", r.cfg_scale, r.cfg_scale != -1);
  option("cfg_power", r.cfg_power, r.cfg_power != -1);
  option("skip_cache", r.skip_cache, r.skip_cache != 0);
  option("shift", r.shift, r.shift != 0, true);
  option("cfg_interval", r.cfg_interval, r.cfg_interval != -1, true);
  option("atol", r.atol, r.atol != 0, true);
  option("rtol", r.rtol, r.rtol != 0, true);
  // 0 zero-velocity steps is every preset's behaviour: only more are flow-only.
  option("zero_init_steps", r.zero_init_steps, r.zero_init_steps >= 0, r.zero_init_steps > 0);
  check_sampler_of(cfg, r.sampler, flow, name("sampler"));
}

uint64_t random_seed() {
  std::random_device rd;
  return rd() & 0xffffffffu;  // printable and within every client's seed range
}

}  // namespace uvit
