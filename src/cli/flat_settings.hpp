// The settings the ranks of a job compare (cli/rank_split.hpp): a config's JSON flattened, its
// numbers by value, so that the same setting written 64 on one rank and 64.0 on another is alike.
#pragma once
#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace uvit::cli {

// `j` flattened ({"/optimizer/lr": 0.001, ...}, keys sorted) without the paths `skip` names
// ("/dataset/path"), a whole number written as a float (64.0, -0.0) as the integer: a number's
// text is then its value's (nlohmann writes a float the shortest way that reads back the same).
inline nlohmann::json flat_settings(const nlohmann::json& j,
                                    const std::vector<std::string>& skip = {}) {
  nlohmann::json f = j.flatten();
  for (const auto& k : skip) f.erase(k);
  for (auto& v : f)
    if (v.is_number_float())
      if (const double d = v.get<double>(); std::trunc(d) == d && std::fabs(d) < 0x1p63)
        v = int64_t(d);
  return f;
}

}  // namespace uvit::cli
