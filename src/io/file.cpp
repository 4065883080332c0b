// Whole-file reads, bounded positional reads and atomic writes (temp file, fsync, rename).
#include "io/file.hpp"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "core/signals.hpp"
#include "io/direct_write.hpp"
#include "io/official_files.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"
#include "uvit/json_parse.hpp"

namespace uvit::io {

namespace {

std::string errno_str() { return std::strerror(errno); }

std::string dir_of(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::mutex g_hold_mu;
int g_hold_depth = 0;
std::optional<SignalScope> g_hold;  // while g_hold_depth > 0
// Set on the CLI's signal thread (core/signals.hpp), read by the writer: lock-free atomic.
std::atomic<int> g_held{0};

extern "C" void hold_signal(int sig) { g_held = sig; }

// UVIT_TEST_WRITE_PAUSE_MS=N sleeps N ms between the last write and the rename, so that
// tests/e2e/ux_audit4.sh can signal a writer inside its critical section.
void test_hook_pause() {
  static const char* ms = std::getenv("UVIT_TEST_WRITE_PAUSE_MS");
  if (ms && *ms) std::this_thread::sleep_for(std::chrono::milliseconds(std::atol(ms)));
}

}  // namespace

SignalHold::SignalHold() {
  std::lock_guard<std::mutex> lock(g_hold_mu);
  if (g_hold_depth++ > 0) return;
  g_hold.emplace(std::initializer_list<int>{SIGINT, SIGTERM, SIGHUP}, hold_signal,
                 SignalScope::Ignored::Keep);
}

SignalHold::~SignalHold() {
  int sig = 0;
  {
    std::lock_guard<std::mutex> lock(g_hold_mu);
    if (--g_hold_depth > 0) return;
    g_hold.reset();
    sig = g_held.exchange(0);
  }
  // The default action ends the process here (exit status 128 + sig); train's handler records it.
  if (sig) raise_here(sig);  // this thread may block it (route_signals_to_one_thread)
}

namespace {
FileId file_id(const struct stat& st) {
  return {uint64_t(st.st_dev), uint64_t(st.st_ino), uint64_t(st.st_size),
          int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}
}  // namespace

InFile::InFile(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) {
    // A missing official file says where the docs say to get it.
    const int err = errno;
    fail(path, ": cannot open: ", std::strerror(err),
         err == ENOENT ? official_file_hint(path) : "");
  }
  struct stat st;
  if (::fstat(fd_, &st) != 0) {
    std::string e = errno_str();
    ::close(fd_);
    fail(path, ": cannot stat: ", e);
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd_);
    fail(path, ": is a directory");
  }
  size_ = static_cast<uint64_t>(st.st_size);
  id_ = file_id(st);
}

FileId InFile::id_now() const {
  struct stat st;
  if (::fstat(fd_, &st) != 0) fail(path_, ": cannot stat: ", errno_str());
  return file_id(st);
}

InFile::InFile(InFile&& o) noexcept
    : path_(std::move(o.path_)), fd_(std::exchange(o.fd_, -1)), size_(o.size_), id_(o.id_) {}

InFile::~InFile() {
  if (fd_ >= 0) ::close(fd_);
}

void InFile::read(uint64_t offset, void* dst, size_t n, const char* what) const {
  if (offset > size_ || n > size_ - offset)
    fail(path_, ": truncated: ", what, " needs bytes ", offset, "..", offset + n, ", file has ",
         size_);
  auto* p = static_cast<uint8_t*>(dst);
  while (n > 0) {
    // pread moves at most ~2 GiB per call on Linux; loop for the rest.
    size_t chunk = n < (size_t(1) << 30) ? n : (size_t(1) << 30);
    ssize_t r = ::pread(fd_, p, chunk, static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      fail(path_, ": read error: ", errno_str());
    }
    if (r == 0) fail(path_, ": truncated while reading ", what, " (file changed?)");
    p += r;
    offset += static_cast<uint64_t>(r);
    n -= static_cast<size_t>(r);
  }
}

namespace {
// PATH.tmp.PID. A name too long for that within NAME_MAX (255 bytes; a target named with 250 was
// written in full and then failed to be created: "File name too long") is cut, and a hash of the
// whole path keeps two such targets apart.
std::string temp_name(const std::string& path) {
  std::string suffix = cat(".tmp.", ::getpid());
  const size_t slash = path.rfind('/'), base = slash == std::string::npos ? 0 : slash + 1;
  if (path.size() - base + suffix.size() <= NAME_MAX) return path + suffix;
  char h[16];
  std::snprintf(h, sizeof h, "~%08zx", std::hash<std::string>{}(path)&0xffffffffu);
  suffix = h + suffix;
  return path.substr(0, base + NAME_MAX - suffix.size()) + suffix;
}
}  // namespace

namespace {
// A symbolic link at `path` is written through, as a shell's `>` writes: the file it names is
// replaced and the link stays (a rename over the link made it a file and left its target as it
// was). The target need not exist yet.
std::string through_links(const std::string& path) {
  std::string p = path;
  for (int hops = 0; hops < 40; ++hops) {  // the kernel's limit (ELOOP)
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return p;
    std::error_code ec;
    const std::filesystem::path t = std::filesystem::read_symlink(p, ec);
    if (ec) return p;
    p = t.is_absolute() ? t.string()
                        : (std::filesystem::path(dir_of(p)) / t).lexically_normal().string();
  }
  return p;
}
}  // namespace

AtomicWriter::AtomicWriter(const std::string& path, Cache cache)
    : path_(path), target_(through_links(path)) {
  tmp_ = temp_name(target_);
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd_ < 0) fail(path, ": cannot create temporary file ", tmp_, ": ", errno_str());
  // A file replaced keeps its permissions (a group's 0664 stays group-writable, a private 0600
  // stays private), as one written in place by `>` would; a new one gets 0666 less the umask.
  if (struct stat st; ::stat(target_.c_str(), &st) == 0 && S_ISREG(st.st_mode))
    ::fchmod(fd_, st.st_mode & 0777);
  if (cache == Cache::kDirect) direct_ = std::make_unique<DirectWriter>(fd_, path_);
}

AtomicWriter::~AtomicWriter() {
  direct_.reset();  // its writer thread may still hold fd_
  if (fd_ >= 0) ::close(fd_);
  if (!done_) ::unlink(tmp_.c_str());
}

void AtomicWriter::write(const void* data, size_t n) {
  UVIT_CHECK(fd_ >= 0 && !done_, path_, ": write after commit");
  if (direct_) {
    direct_->write(data, n);
    written_ += n;
    return;
  }
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    size_t chunk = n < (size_t(1) << 30) ? n : (size_t(1) << 30);
    ssize_t r = ::write(fd_, p, chunk);
    if (r < 0) {
      if (errno == EINTR) continue;
      fail(path_, ": write error: ", errno_str());
    }
    if (r == 0) fail(path_, ": write error: no progress");
    p += r;
    n -= static_cast<size_t>(r);
    written_ += static_cast<uint64_t>(r);
  }
}

void AtomicWriter::commit() {
  UVIT_CHECK(fd_ >= 0 && !done_, path_, ": commit twice");
  if (direct_) direct_->finish();
  test_hook_pause();
  if (::fsync(fd_) != 0) fail(path_, ": fsync failed: ", errno_str());
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail(path_, ": close failed: ", errno_str());
  if (::rename(tmp_.c_str(), target_.c_str()) != 0)
    fail(path_, ": cannot rename ", tmp_, ": ", errno_str());
  done_ = true;
  sync_dir(dir_of(target_));  // the rename itself durable
}

void sync_dir(const std::string& dir) {
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace uvit::io

namespace uvit {

void write_file_atomic(const std::string& path, const void* data, size_t n) {
  io::AtomicWriter w(path);
  w.write(data, n);
  w.commit();
}

std::vector<uint8_t> read_file(const std::string& path) {
  io::InFile f(path);
  if (f.size() > SIZE_MAX / 2) fail(path, ": file too large (", f.size(), " bytes)");
  std::vector<uint8_t> out(static_cast<size_t>(f.size()));
  f.read(0, out.data(), out.size(), "file");
  return out;
}

nlohmann::json read_json_file(const std::string& path) {
  UVIT_CHECK(std::filesystem::exists(path), path, ": file not found");
  const std::vector<uint8_t> raw = read_file(path);
  try {
    return parse_json(std::string(raw.begin(), raw.end()), path);
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": invalid JSON (", e.what(), ")");
  }
}

}  // namespace uvit
