#include "cli/chunk_claim.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "uvit/error.hpp"

namespace uvit::cli {

ChunkClaim::~ChunkClaim() { done(); }

bool ChunkClaim::lock(bool wait) {
  for (;;) {
    const int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) return true;  // saving the chunk there will say what is wrong
    int r;
    while ((r = ::flock(fd, wait ? LOCK_EX : LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {
    }
    if (r != 0) {
      const int e = errno;
      ::close(fd);
      return e != EWOULDBLOCK;
    }
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
  // A file opened for writing, not the folder: on NFS flock becomes a byte-range lock, which a
  // read-only descriptor (all a folder gives) cannot take. The file stays (removing it would race).
  fd_ = ::open((std::filesystem::path(dir) / ".manifest.lock").c_str(),
               O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd_ >= 0)
    while (::flock(fd_, LOCK_EX) != 0 && errno == EINTR) {
    }
}

WorkFolderHold::~WorkFolderHold() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace uvit::cli
