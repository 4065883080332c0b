// Writing a big file past the page cache (O_DIRECT), for io::AtomicWriter's kDirect mode
// (docs/formats.md, "Writing .pth": why, and what it measured).
#pragma once
#include <sys/types.h>

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <string>
#include <thread>

namespace uvit::io {

// Test seam: the write(2) every DirectWriter calls (nullptr: ::write). A test makes one come back
// short or refused mid-file, which no file system here does on demand. Set it while no writer runs.
using WriteCall = ssize_t (*)(int fd, const void* p, size_t n);
void set_write_call_for_test(WriteCall f);

// Copies what it is given into page-aligned buffers and writes them with O_DIRECT, whole buffers
// on a thread of its own so that the disk works while the next buffer fills; finish() writes the
// tail through the page cache. Where the file system refuses O_DIRECT (some FUSE mounts), or a
// write comes back short or refused, it writes the rest through the page cache: the bytes in the
// file are the same either way.
class DirectWriter {
 public:
  // `path` names the file in error messages.
  DirectWriter(int fd, const std::string& path);
  ~DirectWriter();
  DirectWriter(const DirectWriter&) = delete;
  DirectWriter& operator=(const DirectWriter&) = delete;

  void write(const void* data, size_t n);
  // Writes what is still buffered; call before fsync.
  void finish();
  // Whether the writes so far went past the page cache (for tests).
  bool direct();

 private:
  void submit();  // hands the full buffer to the writer thread, continues in the other one
  void wait();    // until the writer thread is idle; rethrows its error
  void write_all(const uint8_t* p, size_t n);
  void end_direct();
  void run();

  int fd_;
  std::string path_;
  bool direct_ = false;  // guarded by mu_ while the thread runs
  uint8_t* bufs_[2] = {nullptr, nullptr};
  int cur_ = 0;
  size_t used_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  const uint8_t* job_ = nullptr;  // a buffer of kBuffer bytes to write, or nullptr
  bool stop_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace uvit::io
