// Internal file helpers for the io readers and writers: bounded positional reads and atomic writes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace uvit::io {

class DirectWriter;  // io/direct_write.hpp

// What a path named at an open: the same identity is the same bytes unless the file was written
// in place within the modification time's resolution (nanoseconds on ext4, xfs, tmpfs, overlayfs).
struct FileId {
  uint64_t dev = 0, ino = 0, size = 0;
  int64_t mtime_ns = 0;
  bool operator==(const FileId&) const = default;
};

// A read-only file with positional, bounds-checked reads (every short read is an Error).
class InFile {
 public:
  explicit InFile(const std::string& path);
  ~InFile();
  InFile(const InFile&) = delete;
  InFile& operator=(const InFile&) = delete;
  // Moved, so that a check of the first bytes and the reader after it share one open.
  InFile(InFile&& o) noexcept;

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }
  // The file's identity at the open, and now (fstat of the open descriptor).
  const FileId& id() const { return id_; }
  FileId id_now() const;
  // Reads exactly n bytes at offset; `what` names the part for the error message.
  void read(uint64_t offset, void* dst, size_t n, const char* what = "data") const;

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
  FileId id_;
};

// Holds SIGINT, SIGTERM and SIGHUP (a closed terminal) while it lives: one that arrives is raised
// again when the last hold ends, so the process stops (or train's handler runs) after the critical
// section, not inside it. Process-wide handlers rather than a thread mask, since any thread may
// take a process signal.
class SignalHold {
 public:
  SignalHold();
  ~SignalHold();
  SignalHold(const SignalHold&) = delete;
  SignalHold& operator=(const SignalHold&) = delete;
};

// fsyncs the folder, so that renames into it are durable; a failure is ignored (it cannot undo
// the renames).
void sync_dir(const std::string& dir);

// Writes path.tmp.PID in the target's directory (its name cut to fit NAME_MAX); commit() fsyncs and
// renames it over the target. Destroyed without commit (an exception on the way), it removes the
// temporary file, so a failed write never clobbers the existing file. A SIGINT/SIGTERM while the
// temporary file exists waits for the rename or the removal, so a stopped process leaves no
// OUT.tmp.PID (docs/ux_audit.md). kDirect writes past the page cache (DirectWriter), for files of
// gigabytes written once.
class AtomicWriter {
 public:
  enum class Cache { kPageCache, kDirect };
  explicit AtomicWriter(const std::string& path, Cache cache = Cache::kPageCache);
  ~AtomicWriter();
  AtomicWriter(const AtomicWriter&) = delete;
  AtomicWriter& operator=(const AtomicWriter&) = delete;

  void write(const void* data, size_t n);
  uint64_t written() const { return written_; }
  void commit();

 private:
  SignalHold hold_;  // first member: taken before the file exists, released after it is gone
  std::string path_, target_, tmp_;  // as named; the file written (through links); its temporary
  int fd_ = -1;
  uint64_t written_ = 0;
  bool done_ = false;
  std::unique_ptr<DirectWriter> direct_;
};

}  // namespace uvit::io
