#include "cli/run_manifest.hpp"

#include <filesystem>
#include <fstream>

#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace uvit::cli {

bool check_or_write_manifest(const std::string& path, const nlohmann::json& manifest,
                             const std::string& owner, const std::string& what,
                             const std::string& remedy) {
  if (!std::filesystem::exists(path)) {
    const std::string m = manifest.dump(1);
    write_file_atomic(path, m.data(), m.size());
    return false;
  }
  std::ifstream f(path);
  const nlohmann::json old = nlohmann::json::parse(f, nullptr, false);
  std::string differ;  // the settings that changed, not two whole manifests
  for (const auto& [key, v] : manifest.items())
    if (!old.is_object() || !old.contains(key) || old[key] != v)
      differ += (differ.empty() ? "" : ", ") + key + " " +
                (old.is_object() && old.contains(key) ? old[key].dump() : "(none)") + " -> " +
                v.dump();
  UVIT_CHECK(old == manifest, owner, ": holds ", what, " of a different run (",
             differ.empty() ? old.dump() : differ, "); ", remedy);
  return true;
}

}  // namespace uvit::cli
