// A sampling case of make_fixtures.py (*_sampling: a network's weights, a stored x_T and labels)
// loaded for generate(): the bare network config under the given schedule, the stored tensors, and
// the CPU network holding the case's "param.*" weights (test_dit_sampling.cpp, test_flow.cpp).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "uvit/array.hpp"
#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/io.hpp"
#include "uvit/network.hpp"

namespace uvit::testing {

struct SamplingCase {
  Config cfg;
  std::map<std::string, Array> t;
  std::unique_ptr<Backend> be;
  std::unique_ptr<Network> net;
  std::vector<float> x_T;
  std::vector<int> labels;
};

// `schedule`: "adm" (DiT's samplers) or "flow"; the fixture's json is the network alone.
inline SamplingCase load_sampling_case(const std::string& name, const std::string& schedule) {
  const std::string dir = UVIT_TEST_FIXTURES;
  SamplingCase c;
  c.cfg = load_config(dir + "/" + name + ".json");
  c.cfg.json["schedule"] = schedule;
  for (auto& [k, a] : load_safetensors(dir + "/" + name + ".safetensors")) c.t[k] = std::move(a);
  c.be = make_cpu_backend();
  c.net = make_network(c.cfg, *c.be);
  NamedArrays sd;
  for (const auto& e : c.net->table().entries()) sd.emplace_back(e.name, c.t.at("param." + e.name));
  c.net->load(sd, name);
  c.x_T = c.t.at("sample.x_T").to_f32();
  for (int64_t y : c.t.at("sample.y").to_i64()) c.labels.push_back(int(y));
  return c;
}

}  // namespace uvit::testing
