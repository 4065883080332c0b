// A small zip reader (central directory, stored and deflated entries, zip64) and a stored-entry
// writer, enough for torch.save archives and .npz files.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "io/crc32.hpp"
#include "io/file.hpp"

namespace uvit::zip {

struct Entry {
  std::string name;
  uint16_t method = 0;  // 0 stored, 8 deflated
  uint32_t crc = 0;
  uint64_t comp_size = 0, size = 0;
  uint64_t local_offset = 0;  // of the local file header
};

class Reader {
 public:
  // Opens the file and reads the central directory; throws uvit::Error if it is not a valid zip.
  explicit Reader(const std::string& path);
  // The same on a file already open (its first bytes checked by the caller).
  explicit Reader(io::InFile file);

  const std::string& path() const { return file_.path(); }
  const io::InFile& file() const { return file_; }
  const std::vector<Entry>& entries() const { return entries_; }
  const Entry* find(const std::string& name) const;  // nullptr if absent

  // Uncompressed contents, CRC-checked.
  std::vector<uint8_t> read(const Entry& e) const;
  // Same, into dst which must hold e.size bytes (stored entries go straight from the file).
  void read_into(const Entry& e, uint8_t* dst) const;

 private:
  uint64_t data_offset(const Entry& e) const;
  io::InFile file_;
  std::vector<Entry> entries_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in entries_
};

// Sizes and offsets at or above this need zip64 records (the 32-bit fields hold 0xFFFFFFFF).
inline constexpr uint64_t kZip64Limit = 0xFFFFFFFFu;

// Writes a zip of stored (uncompressed) entries through a byte sink, adding zip64 records only
// when sizes or offsets need them. Timestamps are fixed (1980-01-01) so output is reproducible.
class Writer {
 public:
  using Sink = std::function<void(const void*, size_t)>;
  // `zip64_at` lowers the zip64 threshold, for tests only: a small archive then takes the same
  // zip64 path as one past 4 GiB.
  explicit Writer(Sink sink, uint64_t zip64_at = kZip64Limit)
      : sink_(std::move(sink)), zip64_at_(zip64_at) {}
  // The entry's contents are the concatenation of the pieces. With `align` > 1 the local header
  // gets a padding extra field (id "FB", as torch.save writes) so that the contents start at a
  // multiple of `align` in the archive.
  void add(const std::string& name, const std::vector<std::pair<const void*, size_t>>& pieces,
           uint64_t align = 1);
  void finish();

 private:
  void put(const void* p, size_t n);
  struct Central {
    std::string name;
    uint32_t crc;
    uint64_t size, offset;
  };
  Sink sink_;
  uint64_t zip64_at_;
  uint64_t pos_ = 0;
  std::vector<Central> central_;
};

}  // namespace uvit::zip
