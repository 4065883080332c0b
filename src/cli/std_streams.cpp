#include "cli/std_streams.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace uvit::cli {

void open_closed_std_fds() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    // The lowest free number is `fd` itself: the lower ones are open by now.
    const int got = ::open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
    if (got >= 0 && got != fd) {
      ::dup2(got, fd);
      ::close(got);
    }
  }
}

int stdout_status(int status) {
  errno = 0;
  const bool flushed = std::fflush(stdout) == 0;
  if (flushed && !std::ferror(stdout)) return status;
  const int err = flushed ? 0 : errno;  // an earlier flush's (std::endl's) errno is gone
  std::fprintf(stderr, "uvit: error: standard output: write error%s%s (what was printed is lost)\n",
               err ? ": " : "", err ? std::strerror(err) : "");
  return status == 0 ? 1 : status;
}

}  // namespace uvit::cli
