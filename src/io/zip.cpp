// Zip reader/writer. Layout facts (PKWARE APPNOTE): end-of-central-directory record at the tail,
// optional zip64 locator and record before it, central directory entries, local headers.
#include "io/zip.hpp"

#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "uvit/error.hpp"

namespace uvit::zip {

namespace {

constexpr uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEocdSig = 0x06054b50,
                   kZip64EocdSig = 0x06064b50, kZip64LocSig = 0x07064b50;

uint16_t rd16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
uint32_t rd32(const uint8_t* p) { return uint32_t(rd16(p)) | (uint32_t(rd16(p + 2)) << 16); }
uint64_t rd64(const uint8_t* p) { return uint64_t(rd32(p)) | (uint64_t(rd32(p + 4)) << 32); }

void wr16(std::vector<uint8_t>& b, uint16_t v) {
  b.push_back(uint8_t(v));
  b.push_back(uint8_t(v >> 8));
}
void wr32(std::vector<uint8_t>& b, uint32_t v) {
  wr16(b, uint16_t(v));
  wr16(b, uint16_t(v >> 16));
}
void wr64(std::vector<uint8_t>& b, uint64_t v) {
  wr32(b, uint32_t(v));
  wr32(b, uint32_t(v >> 32));
}

// What read() checks before it allocates e.size bytes: a method we can read, and for deflate a size
// within its ~1032:1 limit. (An unknown method with a 2 GB size was an allocation bomb.)
void check_readable(const std::string& path, const Entry& e) {
  if (e.method != 0 && e.method != 8)
    fail(path, ": ", e.name, ": unsupported zip compression method ", e.method);
  if (e.method == 8 && e.size / 1032 > e.comp_size + 1)
    fail(path, ": corrupt zip: entry ", e.name, " claims ", e.size, " bytes from ", e.comp_size,
         " compressed");
}

}  // namespace

Reader::Reader(const std::string& path) : Reader(io::InFile(path)) {}

Reader::Reader(io::InFile file) : file_(std::move(file)) {
  const std::string& path = file_.path();
  const uint64_t size = file_.size();
  if (size < 22) fail(path, ": not a zip archive (", size, " bytes)");
  // The end record is 22 bytes plus a comment of up to 65535 bytes.
  uint64_t tail_len = std::min<uint64_t>(size, 22 + 65535);
  std::vector<uint8_t> tail(tail_len);
  file_.read(size - tail_len, tail.data(), tail_len, "zip end record");
  int64_t at = -1;
  for (int64_t i = int64_t(tail_len) - 22; i >= 0; --i) {
    if (rd32(&tail[i]) == kEocdSig && uint64_t(i) + 22 + rd16(&tail[i + 20]) <= tail_len) {
      at = i;
      break;
    }
  }
  if (at < 0) {
    // A file that starts as a zip but has no end record is one whose copy stopped early.
    uint8_t head[4];
    file_.read(0, head, 4, "zip header");
    if (rd32(head) == kLocalSig)
      fail(path, ": truncated: a zip archive without its end (no central directory in its ", size,
           " bytes; the download or copy stopped early)");
    fail(path, ": not a zip archive (no end of central directory record)");
  }
  const uint8_t* e = &tail[at];
  const uint64_t eocd_pos = size - tail_len + uint64_t(at);
  uint64_t n_entries = rd16(e + 10), cd_size = rd32(e + 12), cd_off = rd32(e + 16);
  if (rd16(e + 4) != 0 || rd16(e + 6) != 0 || rd16(e + 8) != rd16(e + 10))
    fail(path, ": multi-disk zip archives are not supported");
  uint64_t cd_limit = eocd_pos;  // the central directory must end before this
  if (eocd_pos >= 20) {
    uint8_t loc[20];
    file_.read(eocd_pos - 20, loc, 20, "zip64 locator");
    if (rd32(loc) == kZip64LocSig) {
      uint64_t rec = rd64(loc + 8);
      if (rec > eocd_pos - 20 || eocd_pos - 20 - rec < 56)
        fail(path, ": corrupt zip64 end record offset ", rec);
      uint8_t z[56];
      file_.read(rec, z, 56, "zip64 end record");
      if (rd32(z) != kZip64EocdSig) fail(path, ": corrupt zip64 end record (bad signature)");
      if (rd32(z + 16) != 0 || rd32(z + 20) != 0 || rd64(z + 24) != rd64(z + 32))
        fail(path, ": multi-disk zip archives are not supported");
      n_entries = rd64(z + 32);
      cd_size = rd64(z + 40);
      cd_off = rd64(z + 48);
      cd_limit = rec;
    }
  }
  if (cd_off > cd_limit || cd_size > cd_limit - cd_off)
    fail(path, ": corrupt zip: central directory at ", cd_off, " (+", cd_size,
         ") lies outside the file");
  if (n_entries > cd_size / 46)
    fail(path, ": corrupt zip: ", n_entries, " entries cannot fit in a ", cd_size,
         "-byte central directory");
  std::vector<uint8_t> cd(cd_size);
  file_.read(cd_off, cd.data(), cd.size(), "zip central directory");

  entries_.reserve(n_entries);
  uint64_t p = 0;
  for (uint64_t k = 0; k < n_entries; ++k) {
    if (cd_size - p < 46 || rd32(&cd[p]) != kCentralSig)
      fail(path, ": corrupt zip: bad central directory entry ", k);
    const uint8_t* c = &cd[p];
    uint16_t flags = rd16(c + 8);
    Entry en;
    en.method = rd16(c + 10);
    en.crc = rd32(c + 16);
    en.comp_size = rd32(c + 20);
    en.size = rd32(c + 24);
    uint64_t name_len = rd16(c + 28), extra_len = rd16(c + 30), comment_len = rd16(c + 32);
    en.local_offset = rd32(c + 42);
    if (cd_size - p - 46 < name_len + extra_len + comment_len)
      fail(path, ": corrupt zip: central directory entry ", k, " overruns the directory");
    en.name.assign(reinterpret_cast<const char*>(c + 46), name_len);
    // Zip64 extra field: 64-bit values for exactly those fields that hold 0xFFFFFFFF.
    const uint8_t* x = c + 46 + name_len;
    for (uint64_t q = 0; q + 4 <= extra_len;) {
      uint16_t id = rd16(x + q), len = rd16(x + q + 2);
      if (q + 4 + len > extra_len) fail(path, ": corrupt zip: bad extra field in ", en.name);
      if (id == 1) {
        const uint8_t* v = x + q + 4;
        uint64_t used = 0;
        auto take = [&](uint64_t& field) {
          if (field != 0xFFFFFFFFu) return;
          if (used + 8 > len) fail(path, ": corrupt zip: short zip64 field in ", en.name);
          field = rd64(v + used);
          used += 8;
        };
        take(en.size);
        take(en.comp_size);
        take(en.local_offset);
      }
      q += 4 + len;
    }
    if (flags & 1) fail(path, ": ", en.name, ": encrypted zip entries are not supported");
    if (en.local_offset > cd_off || cd_off - en.local_offset < 30 + name_len ||
        en.comp_size > cd_off - en.local_offset - 30 - name_len)
      fail(path, ": corrupt zip: entry ", en.name, " lies outside the data area");
    if (en.method == 0 && en.comp_size != en.size)
      fail(path, ": corrupt zip: stored entry ", en.name, " has compressed size ", en.comp_size,
           " != size ", en.size);
    if (!index_.emplace(en.name, entries_.size()).second)
      fail(path, ": corrupt zip: duplicate entry ", en.name);
    entries_.push_back(std::move(en));
    p += 46 + name_len + extra_len + comment_len;
  }
}

const Entry* Reader::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

uint64_t Reader::data_offset(const Entry& e) const {
  const std::string& path = file_.path();
  uint8_t h[30];
  file_.read(e.local_offset, h, 30, "zip local header");
  if (rd32(h) != kLocalSig) fail(path, ": corrupt zip: bad local header for ", e.name);
  uint64_t name_len = rd16(h + 26), extra_len = rd16(h + 28);
  if (name_len != e.name.size())
    fail(path, ": corrupt zip: local header name differs for ", e.name);
  std::string name(name_len, '\0');
  file_.read(e.local_offset + 30, name.data(), name_len, "zip local header");
  if (name != e.name) fail(path, ": corrupt zip: local header name differs for ", e.name);
  uint64_t off = e.local_offset + 30 + name_len + extra_len;
  if (off > file_.size() || e.comp_size > file_.size() - off)
    fail(path, ": truncated: entry ", e.name, " needs ", e.comp_size, " bytes at ", off,
         ", file has ", file_.size());
  return off;
}

std::vector<uint8_t> Reader::read(const Entry& e) const {
  check_readable(file_.path(), e);
  std::vector<uint8_t> out(e.size);
  read_into(e, out.data());
  return out;
}

void Reader::read_into(const Entry& e, uint8_t* dst) const {
  const std::string& path = file_.path();
  check_readable(path, e);
  uint64_t off = data_offset(e);
  uint32_t crc = 0;
  if (e.method == 0) {
    // Chunked so the CRC runs on data that is still in cache.
    constexpr uint64_t kChunk = 8u << 20;
    for (uint64_t done = 0; done < e.size;) {
      size_t n = size_t(std::min(kChunk, e.size - done));
      file_.read(off + done, dst + done, n, e.name.c_str());
      crc = zip::crc32(crc, dst + done, n);
      done += n;
    }
  } else {
    std::vector<uint8_t> in(e.comp_size);
    file_.read(off, in.data(), in.size(), e.name.c_str());
    z_stream zs{};
    if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) fail(path, ": zlib inflateInit failed");
    uint8_t dummy = 0;  // zlib rejects a null next_out even when no output is expected
    zs.next_out = &dummy;
    zs.next_in = &dummy;
    uint64_t in_done = 0, out_done = 0;
    int rc = Z_OK;
    while (rc == Z_OK) {
      if (zs.avail_in == 0 && in_done < in.size()) {
        zs.next_in = in.data() + in_done;
        zs.avail_in = uInt(std::min<uint64_t>(in.size() - in_done, 1u << 30));
        in_done += zs.avail_in;
      }
      if (zs.avail_out == 0 && out_done < e.size) {
        zs.next_out = dst + out_done;
        zs.avail_out = uInt(std::min<uint64_t>(e.size - out_done, 1u << 30));
        out_done += zs.avail_out;
      }
      uInt before_in = zs.avail_in, before_out = zs.avail_out;
      rc = inflate(&zs, Z_NO_FLUSH);
      // No progress possible (input exhausted or output full before the stream ended).
      if (rc == Z_BUF_ERROR ||
          (rc == Z_OK && zs.avail_in == before_in && zs.avail_out == before_out))
        break;
    }
    uint64_t produced = zs.total_out;
    std::string msg = zs.msg ? zs.msg : "data ends early or is longer than its size";
    inflateEnd(&zs);
    if (rc != Z_STREAM_END)
      fail(path, ": corrupt zip: entry ", e.name, " does not inflate (", msg, ")");
    if (produced != e.size)
      fail(path, ": corrupt zip: entry ", e.name, " inflates to ", produced, " bytes, expected ",
           e.size);
    crc = zip::crc32(0, dst, e.size);
  }
  if (crc != e.crc) fail(path, ": corrupt zip: CRC mismatch in ", e.name);
}

void Writer::put(const void* p, size_t n) {
  sink_(p, n);
  pos_ += n;
}

void Writer::add(const std::string& name, const std::vector<std::pair<const void*, size_t>>& pieces,
                 uint64_t align) {
  UVIT_CHECK(name.size() < 0xFFFF, "zip: entry name too long: ", name);
  uint32_t crc = 0;
  uint64_t size = 0;
  for (auto& [p, n] : pieces) {
    crc = zip::crc32(crc, p, n);
    size += n;
  }
  const bool z64 = size >= zip64_at_;
  const uint64_t fixed = 30 + name.size() + (z64 ? 20 : 0);  // header, name, zip64 field
  // The padding field is at least its own 4-byte header, so it is always present when aligning.
  const uint64_t pad = align > 1 ? 4 + (align - (pos_ + fixed + 4) % align) % align : 0;
  std::vector<uint8_t> h;
  wr32(h, kLocalSig);
  wr16(h, z64 ? 45 : 20);  // version needed
  wr16(h, 0);              // flags
  wr16(h, 0);              // stored
  wr16(h, 0);              // time 00:00
  wr16(h, 0x21);           // date 1980-01-01
  wr32(h, crc);
  wr32(h, z64 ? 0xFFFFFFFFu : uint32_t(size));
  wr32(h, z64 ? 0xFFFFFFFFu : uint32_t(size));
  wr16(h, uint16_t(name.size()));
  wr16(h, uint16_t((z64 ? 20 : 0) + pad));
  h.insert(h.end(), name.begin(), name.end());
  if (z64) {
    wr16(h, 1);
    wr16(h, 16);
    wr64(h, size);
    wr64(h, size);
  }
  if (pad > 0) {
    wr16(h, 0x4246);  // "FB"
    wr16(h, uint16_t(pad - 4));
    h.insert(h.end(), pad - 4, 'Z');
  }
  central_.push_back({name, crc, size, pos_});
  put(h.data(), h.size());
  for (auto& [p, n] : pieces) put(p, n);
}

void Writer::finish() {
  const uint64_t cd_off = pos_;
  for (const Central& c : central_) {
    // An entry that needs zip64 at all gets all three fields in its zip64 record: miniz (torch's
    // reader) checks that an entry lies inside the file by adding its size to the 32-bit offset
    // field, 0xFFFFFFFF for a zip64 offset, unless the size field is 0xFFFFFFFF too.
    const bool big_size = c.size >= zip64_at_ || c.offset >= zip64_at_, big_off = big_size;
    std::vector<uint8_t> x;
    if (big_size || big_off) {
      wr16(x, 1);
      wr16(x, uint16_t((big_size ? 16 : 0) + (big_off ? 8 : 0)));
      if (big_size) {
        wr64(x, c.size);
        wr64(x, c.size);
      }
      if (big_off) wr64(x, c.offset);
    }
    std::vector<uint8_t> h;
    wr32(h, kCentralSig);
    wr16(h, x.empty() ? 20 : 45);  // version made by
    wr16(h, x.empty() ? 20 : 45);  // version needed
    wr16(h, 0);
    wr16(h, 0);
    wr16(h, 0);
    wr16(h, 0x21);
    wr32(h, c.crc);
    wr32(h, big_size ? 0xFFFFFFFFu : uint32_t(c.size));
    wr32(h, big_size ? 0xFFFFFFFFu : uint32_t(c.size));
    wr16(h, uint16_t(c.name.size()));
    wr16(h, uint16_t(x.size()));
    wr16(h, 0);  // comment
    wr16(h, 0);  // disk
    wr16(h, 0);  // internal attributes
    wr32(h, 0);  // external attributes
    wr32(h, big_off ? 0xFFFFFFFFu : uint32_t(c.offset));
    h.insert(h.end(), c.name.begin(), c.name.end());
    h.insert(h.end(), x.begin(), x.end());
    put(h.data(), h.size());
  }
  const uint64_t cd_size = pos_ - cd_off, n = central_.size();
  std::vector<uint8_t> t;
  const bool z64 = n >= 0xFFFF || cd_off >= zip64_at_ || cd_size >= zip64_at_;
  if (z64) {
    const uint64_t rec = pos_;
    wr32(t, kZip64EocdSig);
    wr64(t, 44);  // size of the rest of this record
    wr16(t, 45);
    wr16(t, 45);
    wr32(t, 0);
    wr32(t, 0);
    wr64(t, n);
    wr64(t, n);
    wr64(t, cd_size);
    wr64(t, cd_off);
    wr32(t, kZip64LocSig);
    wr32(t, 0);
    wr64(t, rec);
    wr32(t, 1);
  }
  wr32(t, kEocdSig);
  wr16(t, 0);
  wr16(t, 0);
  wr16(t, z64 ? 0xFFFF : uint16_t(n));
  wr16(t, z64 ? 0xFFFF : uint16_t(n));
  wr32(t, z64 ? 0xFFFFFFFFu : uint32_t(cd_size));
  wr32(t, z64 ? 0xFFFFFFFFu : uint32_t(cd_off));
  wr16(t, 0);
  put(t.data(), t.size());
}

}  // namespace uvit::zip
