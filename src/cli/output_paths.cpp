#include "cli/output_paths.hpp"

#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "uvit/error.hpp"

namespace fs = std::filesystem;

namespace uvit::cli {

namespace {
// `dir` exists as a writable folder, or its nearest existing ancestor is one (so it can be made).
void check_creatable(const char* option, const std::string& path, const fs::path& dir) {
  std::error_code ec;
  fs::path p = dir.empty() ? fs::path(".") : dir;
  while (!fs::exists(p, ec) && p.has_parent_path() && p.parent_path() != p) p = p.parent_path();
  if (!fs::exists(p, ec)) p = ".";
  UVIT_CHECK(fs::is_directory(p, ec), option, " ", path, ": ", p.string(),
             " is a file, not a folder");
  UVIT_CHECK(::access(p.c_str(), W_OK | X_OK) == 0, option, " ", path, ": folder ", p.string(),
             " is not writable");
}
}  // namespace

void check_output(const char* option, const std::string& path,
                  std::initializer_list<const char*> exts) {
  if (path.empty()) return;
  const fs::path p(path);
  if (exts.size() > 0) {
    std::string ext = p.extension().string(), list;
    for (char& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
    bool ok = false;
    for (const char* e : exts) {
      ok = ok || ext == e;
      list += (list.empty() ? "" : " or ") + std::string(e);
    }
    UVIT_CHECK(ok, option, " ", path, ": writes ", list, " only; name the file *", *exts.begin());
  }
  std::error_code ec;
  UVIT_CHECK(!fs::is_directory(p, ec), option, " ", path, ": is a folder; give a file name");
  check_creatable(option, path, p.parent_path());
}

void check_output_dir(const char* option, const std::string& dir) {
  if (dir.empty()) return;
  std::error_code ec;
  UVIT_CHECK(!fs::exists(dir, ec) || fs::is_directory(dir, ec), option, " ", dir,
             ": is a file, not a folder");
  check_creatable(option, dir, fs::path(dir));
}

void make_parent_dir(const std::string& path) {
  const fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) return;
  std::error_code ec;
  fs::create_directories(dir, ec);
  UVIT_CHECK(!ec, path, ": cannot create folder ", dir.string(), ": ", ec.message());
}

std::string sample_file_name(uint64_t index) {
  char b[32];
  std::snprintf(b, sizeof b, "%06llu.png", static_cast<unsigned long long>(index));
  return b;
}

}  // namespace uvit::cli
