// Unicode property tables for the CLIP tokenizer (generated into unicode_tables.cpp by
// gen_unicode_tables.py from Python's unicodedata, which the official tokenizer relies on).
#pragma once
#include <cstddef>
#include <cstdint>

namespace uvit::text {

struct CodeRange {
  uint32_t lo, hi;  // inclusive
};
// lower(c) = c + delta for c = first, first + step, ..., last.
struct LowerRun {
  uint32_t first, last;
  int32_t step, delta;
};
struct LowerMulti {
  uint32_t cp;
  const char* utf8;
};

extern const CodeRange kLetter[];  // general category L*
extern const size_t kLetterSize;
extern const CodeRange kNumber[];  // general category N*
extern const size_t kNumberSize;
extern const CodeRange kSpace[];  // str.isspace()
extern const size_t kSpaceSize;
extern const CodeRange kCased[];  // Lowercase | Uppercase | Lt
extern const size_t kCasedSize;
extern const CodeRange kCaseIgnorable[];
extern const size_t kCaseIgnorableSize;
extern const LowerRun kLower[];
extern const size_t kLowerSize;
extern const LowerMulti kLowerMulti[];
extern const size_t kLowerMultiSize;

}  // namespace uvit::text
