// O_DIRECT writes through a staging buffer (docs/formats.md, "Writing .pth"). On the VMs measured,
// a buffered write of 2.6 GB spends most of its time in the kernel copying into freshly allocated
// page-cache pages; O_DIRECT has the disk read the staging buffer, which stays allocated.
#include "io/direct_write.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "uvit/error.hpp"

namespace uvit::io {

namespace {

// O_DIRECT wants buffer addresses, file offsets and sizes in multiples of the logical block size;
// 4096 covers 512-byte and 4K-sector disks. 1 MiB a write kept the disk as busy as 8 MiB did
// (docs/benchmarks.md) and adds only that much to the peak RSS.
constexpr size_t kAlign = 4096, kBuffer = size_t(1) << 20;

}  // namespace

DirectWriter::DirectWriter(int fd, const std::string& path) : fd_(fd), path_(path) {
  const int flags = ::fcntl(fd_, F_GETFL);
  // The file must be empty so far: every O_DIRECT write starts at a multiple of kAlign.
  if (flags < 0 || ::lseek(fd_, 0, SEEK_CUR) != 0) return;
  if (::fcntl(fd_, F_SETFL, flags | O_DIRECT) != 0) return;  // not on this file system
  buf_ = static_cast<uint8_t*>(std::aligned_alloc(kAlign, kBuffer));
  if (!buf_) {
    end_direct();
    return;
  }
  direct_ = true;
}

DirectWriter::~DirectWriter() { std::free(buf_); }

void DirectWriter::end_direct() {
  const int flags = ::fcntl(fd_, F_GETFL);
  if (flags >= 0) ::fcntl(fd_, F_SETFL, flags & ~O_DIRECT);
  direct_ = false;
}

void DirectWriter::write_all(const uint8_t* p, size_t n) {
  while (n > 0) {
    const size_t chunk = n < (size_t(1) << 30) ? n : (size_t(1) << 30);
    const ssize_t r = ::write(fd_, p, chunk);
    if (r < 0) {
      if (errno == EINTR) continue;
      // EINVAL: this file system wants another alignment after all; the page cache takes any.
      if (errno == EINVAL && direct_) {
        end_direct();
        continue;
      }
      fail(path_, ": write error: ", std::strerror(errno));
    }
    if (r == 0) fail(path_, ": write error: no progress");
    // A short O_DIRECT write leaves the offset unaligned: the rest goes through the page cache.
    if (size_t(r) != chunk && direct_) end_direct();
    p += r;
    n -= size_t(r);
  }
}

void DirectWriter::flush(size_t n) {
  write_all(buf_, n);
  used_ = 0;
}

void DirectWriter::write(const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  if (!direct_) {
    if (used_ > 0) flush(used_);  // what was staged before O_DIRECT ended goes first
    write_all(p, n);
    return;
  }
  while (n > 0) {
    const size_t take = n < kBuffer - used_ ? n : kBuffer - used_;
    std::memcpy(buf_ + used_, p, take);
    used_ += take;
    p += take;
    n -= take;
    if (used_ == kBuffer) flush(kBuffer);
  }
}

void DirectWriter::finish() {
  if (used_ == 0) return;
  if (direct_) {
    // The aligned head of what is left goes direct, the last partial block through the cache.
    const size_t head = used_ / kAlign * kAlign;
    if (head > 0) write_all(buf_, head);
    if (direct_) end_direct();
    write_all(buf_ + head, used_ - head);
    used_ = 0;
    return;
  }
  flush(used_);
}

}  // namespace uvit::io
