// The weights files read in this process: path (absolute, normalised) -> identity at the open.
#include "io/loaded_weights.hpp"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "io/abs_path.hpp"

namespace uvit::io {

namespace {

std::mutex g_mu;
// One entry per weights path the process reads (a few: the model, its autoencoder, encoders).
std::map<std::string, FileId> g_loaded;

// Lexical, not canonical: a symlink re-pointed between the load and the hash is the same key, and
// the identities differ.
std::string key(const std::string& path) { return absolute_path(path); }

}  // namespace

void note_loaded(const std::string& path, const FileId& id) {
  const std::string k = key(path);
  std::lock_guard<std::mutex> lock(g_mu);
  g_loaded[k] = id;
}

std::optional<FileId> loaded_as(const std::string& path) {
  const std::string k = key(path);
  std::lock_guard<std::mutex> lock(g_mu);
  const auto it = g_loaded.find(k);
  if (it == g_loaded.end()) return std::nullopt;
  return it->second;
}

void pause_for_test(const char* var) {
  static std::set<std::string> done;
  const char* f = std::getenv(var);
  if (!f || !*f || !done.insert(var).second) return;
  std::ofstream(f) << "paused\n";
  for (int i = 0; i < 12000 && std::filesystem::exists(f); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

}  // namespace uvit::io
