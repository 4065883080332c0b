// CLIP text cleaning and pre-tokenisation, by hand over code points (no std::regex: it does not
// know UTF-8 or Unicode categories). The rules are those of the official Python code: whitespace
// per str.isspace, str.lower() (with its final-sigma rule), and the `regex` pattern's categories.
#include <algorithm>
#include <cctype>

#include "text/unicode_tables.hpp"
#include "uvit/clip.hpp"
#include "uvit/error.hpp"

namespace uvit {
namespace {
using text::CodeRange;

bool in_table(const CodeRange* t, size_t n, uint32_t c) {
  const CodeRange* end = t + n;
  const CodeRange* it =
      std::upper_bound(t, end, c, [](uint32_t v, const CodeRange& r) { return v < r.lo; });
  return it != t && c <= (it - 1)->hi;
}
bool is_letter(uint32_t c) { return in_table(text::kLetter, text::kLetterSize, c); }
bool is_number(uint32_t c) { return in_table(text::kNumber, text::kNumberSize, c); }
bool is_space(uint32_t c) { return in_table(text::kSpace, text::kSpaceSize, c); }
bool is_cased(uint32_t c) { return in_table(text::kCased, text::kCasedSize, c); }
bool is_case_ignorable(uint32_t c) {
  return in_table(text::kCaseIgnorable, text::kCaseIgnorableSize, c);
}

std::vector<uint32_t> decode_utf8(const std::string& s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned char b = p[i];
    int len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    UVIT_CHECK(len > 0 && i + len <= n, "text: invalid UTF-8 at byte ", i);
    uint32_t c = len == 1 ? b : len == 2 ? (b & 0x1F) : len == 3 ? (b & 0x0F) : (b & 0x07);
    for (int k = 1; k < len; ++k) {
      UVIT_CHECK((p[i + k] & 0xC0) == 0x80, "text: invalid UTF-8 at byte ", i);
      c = (c << 6) | (p[i + k] & 0x3F);
    }
    static const uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    UVIT_CHECK(c >= kMin[len] && c <= 0x10FFFF && (c < 0xD800 || c > 0xDFFF),
               "text: invalid UTF-8 at byte ", i);
    out.push_back(c);
    i += size_t(len);
  }
  return out;
}

void append_utf8(std::string& s, uint32_t c) {
  if (c < 0x80) {
    s += char(c);
  } else if (c < 0x800) {
    s += char(0xC0 | (c >> 6));
    s += char(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    s += char(0xE0 | (c >> 12));
    s += char(0x80 | ((c >> 6) & 0x3F));
    s += char(0x80 | (c & 0x3F));
  } else {
    s += char(0xF0 | (c >> 18));
    s += char(0x80 | ((c >> 12) & 0x3F));
    s += char(0x80 | ((c >> 6) & 0x3F));
    s += char(0x80 | (c & 0x3F));
  }
}

uint32_t simple_lower(uint32_t c) {
  const auto* t = text::kLower;
  const auto* end = t + text::kLowerSize;
  const auto* it =
      std::upper_bound(t, end, c, [](uint32_t v, const text::LowerRun& r) { return v < r.first; });
  if (it == t) return c;
  --it;
  if (c > it->last || (c - it->first) % uint32_t(it->step) != 0) return c;
  return uint32_t(int64_t(c) + it->delta);
}

// Python's str.lower() of code points cps[i] (final sigma looks at the neighbours).
void append_lower(std::string& out, const std::vector<uint32_t>& cps, size_t i) {
  uint32_t c = cps[i];
  for (size_t k = 0; k < text::kLowerMultiSize; ++k)
    if (text::kLowerMulti[k].cp == c) {
      out += text::kLowerMulti[k].utf8;
      return;
    }
  if (c == 0x3A3) {  // capital sigma: final form after a cased letter not followed by one
    size_t j = i;
    while (j > 0 && is_case_ignorable(cps[j - 1])) --j;
    bool fin = j > 0 && is_cased(cps[j - 1]);
    if (fin) {
      size_t k = i + 1;
      while (k < cps.size() && is_case_ignorable(cps[k])) ++k;
      fin = k == cps.size() || !is_cased(cps[k]);
    }
    append_utf8(out, fin ? 0x3C2 : 0x3C3);
    return;
  }
  append_utf8(out, simple_lower(c));
}

}  // namespace

std::string clip_clean_text(const std::string& utf8) {
  std::vector<uint32_t> in = decode_utf8(utf8);
  // re.sub(r"\s+", " ", text).strip()
  std::vector<uint32_t> cps;
  cps.reserve(in.size());
  for (uint32_t c : in) {
    if (is_space(c)) {
      if (!cps.empty() && cps.back() != ' ') cps.push_back(' ');
    } else {
      cps.push_back(c);
    }
  }
  if (!cps.empty() && cps.back() == ' ') cps.pop_back();
  std::string out;
  out.reserve(utf8.size());
  for (size_t i = 0; i < cps.size(); ++i) append_lower(out, cps, i);
  return out;
}

std::vector<std::string> clip_pretokenize(const std::string& cleaned) {
  std::vector<uint32_t> c = decode_utf8(cleaned);
  const size_t n = c.size();
  std::vector<std::string> out;
  auto emit = [&](size_t a, size_t b) {
    std::string s;
    for (size_t k = a; k < b; ++k) append_utf8(s, c[k]);
    out.push_back(std::move(s));
  };
  // Case-insensitive match of ASCII `lit` at position i (the pattern is compiled with IGNORECASE;
  // U+017F LONG S case-folds to 's').
  auto match = [&](size_t i, const char* lit) {
    size_t k = 0;
    for (; lit[k]; ++k) {
      if (i + k >= n) return size_t(0);
      uint32_t x = c[i + k];
      if (x == 0x17F) x = 's';
      if (x < 128) x = uint32_t(std::tolower(int(x)));
      if (x != uint32_t(lit[k])) return size_t(0);
    }
    return k;
  };
  static const char* const kSpecial[] = {"<|startoftext|>", "<|endoftext|>"};
  static const char* const kContractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
  size_t i = 0;
  while (i < n) {
    if (is_space(c[i])) {  // matched by no alternative: findall skips it
      ++i;
      continue;
    }
    size_t len = 0;
    for (const char* s : kSpecial)
      if (!len) len = match(i, s);
    for (const char* s : kContractions)
      if (!len) len = match(i, s);
    if (!len && is_letter(c[i])) {
      while (i + len < n && is_letter(c[i + len])) ++len;
    } else if (!len && is_number(c[i])) {
      len = 1;
    } else if (!len) {
      while (i + len < n && !is_space(c[i + len]) && !is_letter(c[i + len]) &&
             !is_number(c[i + len]))
        ++len;
    }
    emit(i, i + len);
    i += len;
  }
  return out;
}

}  // namespace uvit
