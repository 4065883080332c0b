// Writing a big file past the page cache (O_DIRECT), for io::AtomicWriter's kDirect mode
// (docs/formats.md, "Writing .pth": why, and what it measured).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace uvit::io {

// Copies what it is given into a page-aligned buffer and writes that with O_DIRECT in whole
// buffers; finish() writes the tail through the page cache. Where the file system refuses
// O_DIRECT (tmpfs, some FUSE), or a write comes back short or refused, it writes the rest through
// the page cache: the bytes in the file are the same either way.
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
  bool direct() const { return direct_; }

 private:
  void flush(size_t n);  // writes buf_[0, n)
  void write_all(const uint8_t* p, size_t n);
  void end_direct();

  int fd_;
  std::string path_;
  bool direct_ = false;
  uint8_t* buf_ = nullptr;
  size_t used_ = 0;
};

}  // namespace uvit::io
