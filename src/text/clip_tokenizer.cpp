// CLIP byte-level BPE (Hugging Face CLIPTokenizer as FrozenCLIPEmbedder calls it: truncation to
// 77, padding with <|endoftext|>). Vocabulary from the original merges list or HF's vocab.json +
// merges.txt.
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/install_dirs.hpp"
#include "dist/weights_hash.hpp"
#include "text/bpe_merge.hpp"
#include "uvit/clip.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"
#include "uvit/json_parse.hpp"

namespace uvit {
namespace fs = std::filesystem;

namespace {

// 49152 - 256 - 2: the merges the official code keeps (lines 1.. of the list; line 0 is a header).
constexpr size_t kNumMerges = 48894;
constexpr const char* kStart = "<|startoftext|>";
constexpr const char* kEnd = "<|endoftext|>";
constexpr size_t kMaxText = size_t(64) << 20;  // decompressed vocabulary files

std::string utf8_of(uint32_t c) {
  std::string s;
  if (c < 0x80) {
    s += char(c);
  } else {
    s += char(0xC0 | (c >> 6));
    s += char(0x80 | (c & 0x3F));
  }
  return s;
}

// GPT-2's bytes_to_unicode in its list order: printable Latin-1 bytes map to themselves, the rest
// to 256, 257, ... Returns (byte, code point) pairs; the vocabulary starts in this order.
std::vector<std::pair<int, uint32_t>> byte_symbols() {
  std::vector<std::pair<int, uint32_t>> v;
  auto keep = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; };
  for (int b = 0; b < 256; ++b)
    if (keep(b)) v.push_back({b, uint32_t(b)});
  uint32_t n = 0;
  for (int b = 0; b < 256; ++b)
    if (!keep(b)) v.push_back({b, 256 + n++});
  return v;
}

std::string read_text(const std::string& path) {
  UVIT_CHECK(fs::exists(path), path, ": file not found");
  std::vector<uint8_t> raw = read_file(path);
  if (raw.size() < 2 || raw[0] != 0x1f || raw[1] != 0x8b)
    return std::string(raw.begin(), raw.end());
  z_stream zs{};
  UVIT_CHECK(inflateInit2(&zs, 16 + MAX_WBITS) == Z_OK, path, ": zlib init failed");
  zs.next_in = raw.data();
  zs.avail_in = uInt(raw.size());
  std::string out;
  char buf[1 << 16];
  int rc;
  do {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&zs);
      fail(path, rc == Z_BUF_ERROR ? ": truncated gzip stream" : ": corrupt gzip stream");
    }
    out.append(buf, sizeof buf - zs.avail_out);
    // The real lists are under 2 MB; a gzip bomb must not take the machine's memory.
    if (out.size() > kMaxText) {
      inflateEnd(&zs);
      fail(path, ": decompresses to more than ", kMaxText >> 20, " MB (not a CLIP vocabulary)");
    }
  } while (rc != Z_STREAM_END);
  inflateEnd(&zs);
  return out;
}

// Lines 1..kNumMerges of a merges list, each split on whitespace into a pair.
std::vector<std::pair<std::string, std::string>> parse_merges(const std::string& text,
                                                              const std::string& path,
                                                              bool need_all) {
  std::vector<std::pair<std::string, std::string>> m;
  size_t pos = 0, line = 0;
  while (pos <= text.size() && m.size() < kNumMerges) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string s = text.substr(pos, nl - pos);
    pos = nl + 1;
    if (line++ == 0) continue;  // "#version: ..."
    if (!s.empty() && s.back() == '\r') s.pop_back();
    if (s.empty() && pos > text.size()) break;  // final newline
    size_t a = s.find_first_not_of(" \t"), sp = s.find_first_of(" \t", a);
    size_t b = sp == std::string::npos ? sp : s.find_first_not_of(" \t", sp);
    UVIT_CHECK(a != std::string::npos && b != std::string::npos &&
                   s.find_first_of(" \t", b) == std::string::npos,
               path, ": line ", line, " is not a merge 'A B'");
    m.push_back({s.substr(a, sp - a), s.substr(b)});
  }
  UVIT_CHECK(!need_all || m.size() == kNumMerges, path, ": ", m.size(), " merges, expected ",
             kNumMerges, " (is this the CLIP bpe_simple_vocab_16e6 list?)");
  UVIT_CHECK(!m.empty(), path, ": no merges");
  return m;
}

}  // namespace

std::string clip_vocab_path(const std::string& given) {
  if (!given.empty()) return given;
  if (const char* e = std::getenv("UVIT_CLIP_VOCAB"); e && *e) return e;
  // An installed uvit's copy (cmake --install), as its presets.
  for (const fs::path& d : installed_data_dirs())
    if (fs::exists(d / "clip" / "bpe_simple_vocab_16e6.txt.gz"))
      return (d / "clip" / "bpe_simple_vocab_16e6.txt.gz").string();
#ifdef UVIT_SOURCE_CONFIG_DIR
  std::string p =
      std::string(UVIT_SOURCE_CONFIG_DIR) + "/../data/clip/bpe_simple_vocab_16e6.txt.gz";
  if (fs::exists(p)) return p;
#endif
  if (const fs::path d = configured_data_dir() / "clip" / "bpe_simple_vocab_16e6.txt.gz";
      fs::exists(d))
    return d.string();
  fail("no CLIP vocabulary: give --vocab or set UVIT_CLIP_VOCAB");
}

void ClipTokenizer::build(std::vector<std::string> tokens,
                          const std::vector<std::pair<std::string, std::string>>& merges,
                          const std::string& what) {
  tokens_ = std::move(tokens);
  ids_.clear();
  for (size_t i = 0; i < tokens_.size(); ++i) ids_[tokens_[i]] = int(i);  // later entries win
  auto id_of = [&](const std::string& s, const char* role) {
    auto it = ids_.find(s);
    UVIT_CHECK(it != ids_.end(), what, ": ", role, " '", s, "' is not in the vocabulary");
    return it->second;
  };
  for (auto [b, cp] : byte_symbols()) {
    byte_id_[b] = id_of(utf8_of(cp), "byte symbol");
    id_of(utf8_of(cp) + "</w>", "word-end byte symbol");  // bpe() ends every word with one
  }
  merges_.clear();
  for (size_t r = 0; r < merges.size(); ++r) {
    const auto& [a, b] = merges[r];
    uint64_t k = bpe_pair_key(id_of(a, "merge part"), id_of(b, "merge part"));
    merges_[k] = {int(r), id_of(a + b, "merge result")};  // a repeated pair: the later rank wins
  }
  start_ = id_of(kStart, "special token");
  end_ = id_of(kEnd, "special token");
}

ClipTokenizer ClipTokenizer::from_bpe_file(const std::string& path) {
  auto merges = parse_merges(read_text(path), path, true);
  std::vector<std::string> tokens;
  auto syms = byte_symbols();
  for (auto [b, cp] : syms) tokens.push_back(utf8_of(cp));
  for (auto [b, cp] : syms) tokens.push_back(utf8_of(cp) + "</w>");
  for (const auto& [a, b] : merges) tokens.push_back(a + b);
  tokens.push_back(kStart);
  tokens.push_back(kEnd);
  ClipTokenizer t;
  t.build(std::move(tokens), merges, path);
  return t;
}

ClipTokenizer ClipTokenizer::from_hf(const std::string& vocab_json, const std::string& merges_txt) {
  std::string text = read_text(vocab_json);
  nlohmann::json j;
  try {
    j = parse_json(text, vocab_json);
  } catch (const nlohmann::json::exception& e) {
    fail(vocab_json, ": invalid JSON (", e.what(), ")");
  }
  UVIT_CHECK(j.is_object() && !j.empty(), vocab_json, ": expected an object token -> id");
  std::vector<std::string> tokens(j.size());
  std::vector<char> seen(j.size(), 0);
  for (auto it = j.begin(); it != j.end(); ++it) {
    UVIT_CHECK(it.value().is_number_integer(), vocab_json, ": id of '", it.key(),
               "' is not an integer");
    int64_t id = it.value().get<int64_t>();
    UVIT_CHECK(id >= 0 && id < int64_t(j.size()) && !seen[size_t(id)], vocab_json, ": id ", id,
               " of '", it.key(), "' is out of range or repeated (ids must be 0..", j.size() - 1,
               ")");
    seen[size_t(id)] = 1;
    tokens[size_t(id)] = it.key();
  }
  auto merges = parse_merges(read_text(merges_txt), merges_txt, false);
  ClipTokenizer t;
  t.build(std::move(tokens), merges, vocab_json);
  return t;
}

ClipTokenizer ClipTokenizer::load(const std::string& path) {
  if (fs::is_directory(path)) {
    if (fs::exists(path + "/vocab.json"))
      return from_hf(path + "/vocab.json", path + "/merges.txt");
    if (fs::exists(path + "/bpe_simple_vocab_16e6.txt.gz"))
      return from_bpe_file(path + "/bpe_simple_vocab_16e6.txt.gz");
    fail(path, ": holds neither vocab.json + merges.txt nor bpe_simple_vocab_16e6.txt.gz");
  }
  if (fs::path(path).extension() == ".json") {
    std::string merges = (fs::path(path).parent_path() / "merges.txt").string();
    UVIT_CHECK(fs::exists(merges), path, ": merges.txt not found beside it (", merges, ")");
    return from_hf(path, merges);
  }
  return from_bpe_file(path);
}

uint64_t ClipTokenizer::hash() const {
  uint64_t h = kWeightsHashSeed;
  for (const std::string& t : tokens_) {  // the length too: "ab","c" is not "a","bc"
    const uint64_t n = t.size();
    h = hash_bytes(t.data(), t.size(), hash_bytes(&n, sizeof n, h));
  }
  // The merges in key order (an unordered_map's order is not part of what was loaded).
  std::vector<std::array<uint64_t, 3>> m;
  m.reserve(merges_.size());
  for (const auto& [k, v] : merges_) m.push_back({k, uint64_t(v.first), uint64_t(v.second)});
  std::sort(m.begin(), m.end());
  return hash_bytes(m.data(), m.size() * sizeof m[0], h);
}

const std::string& ClipTokenizer::token(int id) const {
  UVIT_CHECK(id >= 0 && id < int(tokens_.size()), "token id ", id, " is outside [0, ",
             tokens_.size(), ")");
  return tokens_[size_t(id)];
}

std::vector<int> ClipTokenizer::bpe(const std::string& word) const {
  if (word == kStart) return {start_};
  if (word == kEnd) return {end_};
  std::vector<int> w;
  for (unsigned char b : word) w.push_back(byte_id_[b]);
  // The last symbol carries the word end.
  w.back() = ids_.at(tokens_[size_t(w.back())] + "</w>");
  return bpe_merge(std::move(w), merges_);
}

std::vector<int> ClipTokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  for (const std::string& word : clip_pretokenize(clip_clean_text(text))) {
    auto p = bpe(word);
    ids.insert(ids.end(), p.begin(), p.end());
  }
  return ids;
}

std::vector<int> ClipTokenizer::tokenize(const std::string& text, int length) const {
  UVIT_CHECK(length >= 2, "tokenize: length ", length, " leaves no room for start and end");
  std::vector<int> body = encode(text);
  if (int(body.size()) > length - 2) body.resize(size_t(length - 2));
  std::vector<int> ids;
  ids.reserve(size_t(length));
  ids.push_back(start_);
  ids.insert(ids.end(), body.begin(), body.end());
  ids.push_back(end_);
  ids.resize(size_t(length), end_);
  return ids;
}

}  // namespace uvit
