#include "cli/output_paths.hpp"

#include <limits.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "uvit/ascii.hpp"
#include "uvit/error.hpp"

namespace fs = std::filesystem;

namespace uvit::cli {

namespace {
// What the kernel refuses of any path before the work rather than at the write after it: a name
// over NAME_MAX, a path over PATH_MAX, and a relative path in a current folder that was deleted
// (`cd d; rm -rf ../d`: "folder . is not writable (No such file or directory)").
void check_path_limits(const char* option, const std::string& path) {
  // Room for what uvit adds: a temporary file's ".tmp.PID", a run's "ckpts/STEP/.saving/...".
  constexpr size_t kMax = PATH_MAX - 1 - 64;
  UVIT_CHECK(path.size() <= kMax, option, " ", path.substr(0, 40), "...: the path is ", path.size(),
             " bytes; at most ", kMax, " here (PATH_MAX ", PATH_MAX,
             ", less 64 for the names uvit adds)");
  for (const fs::path& part : fs::path(path))
    UVIT_CHECK(part.native().size() <= NAME_MAX, option, " ", path, ": the name ",
               part.native().substr(0, 20), "... is ", part.native().size(),
               " bytes; a file or folder name holds at most ", NAME_MAX, " (NAME_MAX)");
  if (fs::path(path).is_relative()) {
    std::error_code ec;
    (void)fs::current_path(ec);  // only its error: the folder may be gone
    UVIT_CHECK(ec != std::errc::no_such_file_or_directory, option, " ", path,
               ": the current folder no longer exists (deleted or moved after the shell entered "
               "it); cd to a folder that exists, or give an absolute path");
  }
}

// `dir` exists as a writable folder, or its nearest existing ancestor is one (so it can be made);
// `file`: `path` is a file in `dir` (else `path` is `dir`).
void check_creatable(const char* option, const std::string& path, const fs::path& dir, bool file) {
  check_path_limits(option, path);
  std::error_code ec;
  fs::path p = dir.empty() ? fs::path(".") : dir, made;  // made: the first folder to be made
  while (!fs::exists(p, ec) && p.has_parent_path() && p.parent_path() != p)
    made = p, p = p.parent_path();
  if (!fs::exists(p, ec)) made = p, p = ".";
  UVIT_CHECK(fs::is_directory(p, ec), option, " ", path, ": ", p.string(),
             " is a file, not a folder");
  UVIT_CHECK(::access(p.c_str(), W_OK | X_OK) == 0, option, " ", path, ": folder ", p.string(),
             " is not writable");
  // access() says yes to root anywhere and knows nothing of read-only mounts or /proc: a file made
  // and removed there meets what the write (or the mkdir) would, before any work. Its error is
  // that of a name made in p, so the line names what would be made there (in /proc, ENOENT is
  // the new name's, not /proc's).
  std::string probe = (p / ".uvit_write_check.XXXXXX").string();
  const int fd = ::mkstemp(probe.data());
  const int err = errno;
  UVIT_CHECK(fd >= 0, option, " ", path, ": cannot create ",
             !made.empty() ? "folder " + made.string()
             : file        ? path
                           : "files in folder " + p.string(),
             ": ", std::strerror(err));
  ::close(fd);
  ::unlink(probe.c_str());
}
}  // namespace

void check_output(const char* option, const std::string& path,
                  std::initializer_list<const char*> exts) {
  if (path.empty()) return;
  const fs::path p(path);
  if (exts.size() > 0) {
    const std::string ext = ascii_lower(p.extension().string());
    std::string list;
    bool ok = false;
    for (const char* e : exts) {
      ok = ok || ext == e;
      list += (list.empty() ? "" : " or ") + std::string(e);
    }
    UVIT_CHECK(ok, option, " ", path, ": writes ", list, " only; name the file *", *exts.begin());
  }
  std::error_code ec;
  UVIT_CHECK(!fs::is_directory(p, ec), option, " ", path, ": is a folder; give a file name");
  check_creatable(option, path, p.parent_path(), true);
}

void check_not_input(const char* option, const std::string& path,
                     std::initializer_list<std::pair<const char*, std::string>> others) {
  if (path.empty()) return;
  std::error_code ec;
  for (const auto& [other, file] : others) {
    if (file.empty()) continue;
    const bool same = fs::path(path).lexically_normal() == fs::path(file).lexically_normal() ||
                      (fs::exists(path, ec) && fs::equivalent(file, path, ec));
    UVIT_CHECK(!same, option, " ", path, " is the ", other, ": writing it would destroy that; ",
               "give another name");
  }
}

void check_output_dir(const char* option, const std::string& dir) {
  if (dir.empty()) return;
  std::error_code ec;
  UVIT_CHECK(!fs::exists(dir, ec) || fs::is_directory(dir, ec), option, " ", dir,
             ": is a file, not a folder");
  check_creatable(option, dir, fs::path(dir), false);
}

void make_parent_dir(const std::string& path) {
  const fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) return;
  std::error_code ec;
  fs::create_directories(dir, ec);
  UVIT_CHECK(!ec, path, ": cannot create folder ", dir.string(), ": ", ec.message());
}

void make_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  UVIT_CHECK(!ec, dir, ": cannot create directory: ", ec.message());
}

std::string sample_file_name(uint64_t index) {
  char b[32];
  std::snprintf(b, sizeof b, "%06llu.png", static_cast<unsigned long long>(index));
  return b;
}

namespace {
// The one conversion of an index pattern: where it starts, where it ends and its width and flag.
struct Conversion {
  size_t begin = std::string::npos, end = 0;
  int width = 0;
  bool zero = false;
};
// Scans `p`; sets `error` when it is not a valid pattern. `n` counts the conversions.
Conversion scan_pattern(const std::string& p, int& n, std::string& error) {
  Conversion c;
  n = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] != '%') continue;
    if (i + 1 < p.size() && p[i + 1] == '%') {
      ++i;
      continue;
    }
    size_t j = i + 1;
    const bool zero = j < p.size() && p[j] == '0';
    if (zero) ++j;
    int width = 0;
    while (j < p.size() && std::isdigit(static_cast<unsigned char>(p[j])) && width < 100)
      width = width * 10 + (p[j++] - '0');
    if (j >= p.size() || (p[j] != 'd' && p[j] != 'i' && p[j] != 'u') || width > 32) {
      error = cat("'", p.substr(i, std::min<size_t>(j + 1, p.size()) - i),
                  "' is not an index conversion (use %d, %06d, ...; %% for a percent sign)");
      return c;
    }
    if (n++ == 0) c = {i, j + 1, width, zero};
  }
  if (n > 1) error = "holds more than one %d conversion";
  return c;
}
}  // namespace

bool is_index_pattern(const char* option, const std::string& path) {
  int n = 0;
  std::string error;
  scan_pattern(path, n, error);
  UVIT_CHECK(error.empty(), option, " ", path, ": ", error);
  return n == 1;
}

std::string format_index_pattern(const std::string& pattern, uint64_t index) {
  int n = 0;
  std::string error, out;
  const Conversion c = scan_pattern(pattern, n, error);
  UVIT_CHECK(error.empty() && n == 1, pattern, ": not an index pattern");
  std::string digits = std::to_string(index);
  if (int(digits.size()) < c.width)
    digits.insert(0, size_t(c.width) - digits.size(), c.zero ? '0' : ' ');
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (i == c.begin) {
      out += digits;
      i = c.end - 1;
    } else {
      out += pattern[i];
      if (pattern[i] == '%') ++i;  // "%%" -> "%"
    }
  }
  return out;
}

}  // namespace uvit::cli
