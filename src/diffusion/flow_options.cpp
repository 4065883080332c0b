// A flow preset's sampling settings: the contract's "sample" fields (docs/flow.md "Options").
#include <cmath>

#include "uvit/error.hpp"
#include "uvit/flow.hpp"
#include "uvit/generate.hpp"

namespace uvit {

void with_flow_defaults(const Config& cfg, GenerateOptions& opt) {
  const nlohmann::json sc = cfg.json.value("sample", nlohmann::json::object());
  if (opt.sampler.empty()) opt.sampler = sc.value("algorithm", std::string("euler"));
  check_flow_sampler_name(opt.sampler);
  if (opt.steps <= 0) opt.steps = sc.value("sample_steps", 250);
  if (opt.shift <= 0) opt.shift = sc.value("shift", 1.0);
  if (opt.cfg_interval < 0) opt.cfg_interval = sc.value("cfg_interval", 0.0);
  if (opt.atol <= 0) opt.atol = sc.value("atol", 1e-6);
  if (opt.rtol <= 0) opt.rtol = sc.value("rtol", 1e-3);
  const bool preset_zero_steps = opt.zero_init_steps < 0;
  if (preset_zero_steps) opt.zero_init_steps = sc.value("zero_init_steps", 0);
  UVIT_CHECK(opt.steps >= 2, "flow samplers need at least 2 time points (steps), got ", opt.steps);
  UVIT_CHECK(opt.shift > 0 && std::isfinite(opt.shift), "the time shift must be positive, got ",
             opt.shift);
  UVIT_CHECK(opt.cfg_interval >= 0 && opt.cfg_interval <= 1,
             "the cfg interval start must lie in [0, 1], got ", opt.cfg_interval);
  UVIT_CHECK(opt.atol > 0 && opt.rtol > 0 && std::isfinite(opt.atol) && std::isfinite(opt.rtol),
             "dopri5 tolerances must be positive, got atol ", opt.atol, " and rtol ", opt.rtol);
  if (preset_zero_steps && opt.zero_init_steps > 0) {
    // The preset's zero-init steps (SVG's cfg_star) belong to its euler grid; the user did not
    // set them, so say how to drop them (docs/svg.md).
    const bool grid = opt.sampler == "euler" || opt.sampler == "heun";
    UVIT_CHECK(grid && opt.zero_init_steps < opt.steps - 1, "config ", cfg.config_name,
               " sets sample.zero_init_steps ", opt.zero_init_steps, " (cfg_star), which ",
               grid ? cat("leaves none of the ", opt.steps - 1, " steps of --steps ", opt.steps)
                    : cat("sampler ", opt.sampler, " does not take"),
               ": add --zero-init-steps 0 (in a request \"zero_init_steps\": 0)");
  }
  check_zero_steps(opt.sampler, opt.steps, opt.zero_init_steps);
}

}  // namespace uvit
