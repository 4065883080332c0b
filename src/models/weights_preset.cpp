// Which preset a weights file belongs to: `uvit info`'s `preset` line and the hint the strict
// load adds to its error (Network::load_reader), one copy of the matching for both.
#include <algorithm>

#include "uvit/config.hpp"
#include "uvit/error.hpp"
#include "uvit/network.hpp"

namespace uvit {

std::string weights_preset(const std::vector<TensorInfo>& tensors,
                           const std::map<std::string, std::string>& meta) {
  const std::vector<std::string> presets = preset_names();
  if (meta.count(kQuantKey)) {  // its scales are in no preset's table: the recorded config
    const auto it = meta.find("config");
    return it != meta.end() && std::count(presets.begin(), presets.end(), it->second) ? it->second
                                                                                      : "";
  }
  size_t values = 0;
  for (const TensorInfo& t : tensors) values += size_t(t.numel());
  for (const std::string& name : presets) {
    try {
      const ParamTable t = network_param_table(load_config(name));
      if (t.entries().size() != tensors.size() || t.total() != values) continue;
      t.check(tensors, name);
      return name;
    } catch (const Error&) {  // another network, or a preset this build cannot describe
    }
  }
  return "";
}

}  // namespace uvit
