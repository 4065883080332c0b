#include "cli/chunk_claim.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "uvit/error.hpp"

namespace uvit::cli {

int lock_file(const std::string& path, bool wait) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) return -1;
  int r;
  while ((r = ::flock(fd, wait ? LOCK_EX : LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {
  }
  if (r == 0) return fd;
  const int e = errno;
  ::close(fd);
  errno = e;
  return -1;
}

ChunkClaim::~ChunkClaim() { done(); }

bool ChunkClaim::lock(bool wait) {
  for (;;) {
    // A claim file that cannot be made: saving the chunk there will say what is wrong.
    const int fd = lock_file(path_, wait);
    if (fd < 0) return errno != EWOULDBLOCK;
    // The holder removes the file before it lets go: a lock on a removed file is no claim (a
    // process that opened the name after the removal made a new file), so open the name again.
    struct stat held, named;
    if (::fstat(fd, &held) == 0 && ::stat(path_.c_str(), &named) == 0 &&
        held.st_dev == named.st_dev && held.st_ino == named.st_ino) {
      char host[256] = "";
      ::gethostname(host, sizeof host - 1);
      const std::string who = cat("pid ", ::getpid(), host[0] ? cat(" on ", host) : "");
      if (::ftruncate(fd, 0) == 0) {  // only words for a waiting process's line
        const ssize_t w = ::pwrite(fd, who.data(), who.size(), 0);
        (void)w;
      }
      fd_ = fd;
      return true;
    }
    ::close(fd);
  }
}

bool ChunkClaim::try_take() { return lock(false); }

void ChunkClaim::take() { lock(true); }

std::string ChunkClaim::holder() const {
  char buf[300];
  std::string who;
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    const ssize_t n = ::pread(fd, buf, sizeof buf, 0);
    if (n > 0) who.assign(buf, size_t(n));
    ::close(fd);
  }
  return who.empty() ? "another process" : who;
}

void ChunkClaim::done() {
  if (fd_ < 0) return;
  ::unlink(path_.c_str());
  ::close(fd_);
  fd_ = -1;
}

WorkFolderHold::WorkFolderHold(const std::string& dir) {
  // A file, not the folder (lock_file says why). The file stays (removing it would race).
  fd_ = lock_file((std::filesystem::path(dir) / ".manifest.lock").string(), true);
}

WorkFolderHold::~WorkFolderHold() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace uvit::cli
