#include "cli/run_manifest.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "cli/json_text.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace uvit::cli {

namespace {
void write_manifest(const std::string& path, const nlohmann::json& manifest) {
  const std::string m = json_text(manifest, 1);
  write_file_atomic(path, m.data(), m.size());
}

// Fails in one line naming the settings that differ between the stored manifest `old` and
// `manifest` ("DIFFERENT (KEY OLD -> NEW, ...); REMEDY"), or the keys an older uvit's lacks;
// returns when they are equal.
void refuse_unless_equal(const nlohmann::json& old, const nlohmann::json& manifest,
                         const std::string& path, const std::string& owner, const std::string& what,
                         const std::string& different, const std::string& remedy) {
  std::string differ, unrecorded;  // the settings that changed, not two whole manifests
  // Only newer keys lacking, one of them not taken as given: an older uvit's manifest, not
  // another run's settings.
  bool only_unrecorded = old.is_object() && old.size() < manifest.size();
  for (const auto& [key, v] : manifest.items()) {
    const bool recorded = old.is_object() && old.contains(key);
    if (recorded && old[key] == v) continue;
    differ += (differ.empty() ? "" : ", ") + key + " " + (recorded ? old[key].dump() : "(none)") +
              " -> " + v.dump();
    if (old.is_object() && !recorded)
      unrecorded += (unrecorded.empty() ? "" : ", ") + key;
    else
      only_unrecorded = false;
  }
  if (old.is_object())
    for (const auto& [key, v] : old.items())
      if (!manifest.contains(key)) only_unrecorded = false;
  UVIT_CHECK(!only_unrecorded, owner, ": holds ", what, " made by an older uvit, whose ", path,
             " does not record ", unrecorded, ", so they cannot be checked against this run; ",
             remedy);
  UVIT_CHECK(old == manifest, different, " (", differ.empty() ? old.dump() : differ, "); ", remedy);
}

// As the file will hold it: a non-UTF-8 name (a Latin-1 --ref or config file) as U+FFFD, so
// that it is written (a plain dump throws type_error.316) and compares equal when read back.
nlohmann::json as_stored(const nlohmann::json& given) {
  return nlohmann::json::parse(json_text(given));
}
}  // namespace

bool check_or_write_manifest(const std::string& path, const nlohmann::json& given,
                             const std::string& owner, const std::string& what,
                             const std::string& remedy, const std::vector<std::string>& newer_keys,
                             bool quiet,
                             const std::vector<std::pair<std::string, std::string>>& located) {
  const nlohmann::json manifest = as_stored(given);
  if (!std::filesystem::exists(path)) {
    write_manifest(path, manifest);
    return false;
  }
  std::ifstream f(path);
  nlohmann::json old = nlohmann::json::parse(f, nullptr, false);
  std::string completed;  // the newer keys an older manifest lacks, when nothing else differs
  nlohmann::json upgraded = old;
  for (const std::string& k : newer_keys)
    if (old.is_object() && !old.contains(k) && manifest.contains(k)) {
      upgraded[k] = manifest[k];
      completed += (completed.empty() ? "" : ", ") + k + " " + manifest[k].dump();
    }
  // A file recorded by path and by content: the same content at another path is the same input
  // (a run folder moved or copied, `./w` for `w`), not another run.
  std::string moved;
  for (const auto& [where, hash] : located)
    if (old.is_object() && old.contains(where) && manifest.contains(where) &&
        old[where] != manifest[where] && old.contains(hash) && manifest.contains(hash) &&
        old[hash] == manifest[hash]) {
      upgraded[where] = manifest[where];
      moved += cat(moved.empty() ? "" : "; ", where, " ", old[where].dump(), " is now ",
                   manifest[where].dump());
    }
  // A path recorded before paths were normalised (`/d/./p.txt`) names what `/d/p.txt` names
  // (io::absolute_path's rule): the same setting, rewritten in the normal form without a word.
  bool renamed = false;
  for (const auto& [key, v] : manifest.items())
    if (upgraded.is_object() && upgraded.contains(key) && v.is_string() &&
        upgraded[key].is_string() && upgraded[key] != v) {
      const std::filesystem::path a(upgraded[key].get<std::string>()), b(v.get<std::string>());
      if (a.is_absolute() && b.is_absolute() && a.lexically_normal() == b.lexically_normal())
        upgraded[key] = v, renamed = true;
    }
  if ((!completed.empty() || !moved.empty() || renamed) && upgraded == manifest) {
    write_manifest(path, manifest);
    if (!quiet && !completed.empty())
      std::fprintf(stderr, "%s: %s predates the record of %s; taken as made with that\n",
                   owner.c_str(), path.c_str(), completed.c_str());
    if (!quiet && !moved.empty())
      std::fprintf(stderr,
                   "%s: its %s are of the same file at another path (%s, same SHA-256): "
                   "resumed, and %s names the new path\n",
                   owner.c_str(), what.c_str(), moved.c_str(), path.c_str());
    return true;
  }
  refuse_unless_equal(old, manifest, path, owner, what,
                      cat(owner, ": holds ", what, " of a different run"), remedy);
  return true;
}

void check_written_manifest(const std::string& path, const nlohmann::json& given,
                            const std::string& owner, const std::string& what,
                            const std::vector<std::pair<std::string, std::string>>& located) {
  nlohmann::json manifest = as_stored(given);
  std::ifstream f(path);
  // Rank 0 wrote it before the barrier: a rank that cannot open it works in another folder (one
  // not shared, or a relative path from another working folder), not on a different run.
  UVIT_CHECK(f.is_open(), path, ": rank 0 wrote it, but this rank cannot open it (",
             std::strerror(errno), "): under mpirun every rank must reach the same ", owner,
             " folder, on a filesystem every node sees (an absolute path where the ranks' working "
             "folders differ; docs/distributed.md)");
  const nlohmann::json old = nlohmann::json::parse(f, nullptr, false);
  // The lead's path of a file of the same content stands for this rank's.
  for (const auto& [where, hash] : located)
    if (old.is_object() && old.contains(where) && manifest.contains(where) && old.contains(hash) &&
        manifest.contains(hash) && old[hash] == manifest[hash])
      manifest[where] = old[where];
  // Rank 0 recorded its own settings: one that differs is this rank's option, not another run.
  refuse_unless_equal(
      old, manifest, path, owner, what,
      cat(path,
          ": this rank was given other settings than rank 0, which recorded "
          "its own there"),
      "under mpirun every rank must be given the same options (docs/distributed.md)");
}

}  // namespace uvit::cli
