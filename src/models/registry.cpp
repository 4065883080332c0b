// The backbone registry: a network is chosen by its config's nnet.name. Adding a backbone means
// one file with its NetworkFamily and one line here (docs/architecture.md).
#include <vector>

#include "models/families.hpp"
#include "uvit/error.hpp"
#include "uvit/quote.hpp"

namespace uvit {

namespace {
const std::vector<NetworkFamily>& families() {
  // One line per backbone.
  // clang-format off
  static const std::vector<NetworkFamily> all = {
      uvit_family("uvit"),
      uvit_family("uvit_t2i"),
      dit_family("dit"),
      dit_family("skip_dit"),
      dit_family("lightningdit"),
      mdt_family("mdt"),
      mdt_family("mdtv1"),
      dit_family("fitv2"),
      dit_family("fitv1"),
      svg_family("svg"),
      lavin_dit_family(),
      diffit_family(),
  };
  // clang-format on
  return all;
}
}  // namespace

std::vector<std::string> network_names() {
  std::vector<std::string> names;
  for (const auto& f : families()) names.push_back(f.name);
  return names;
}

const NetworkFamily& network_family(const std::string& name) {
  for (const auto& f : families())
    if (f.name == name) return f;
  std::string known;
  for (const auto& n : network_names()) known += (known.empty() ? "" : ", ") + n;
  fail("nnet.name \"", clipped(name), "\" is not a known network (", known, ")");
}

}  // namespace uvit
