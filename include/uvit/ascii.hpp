// ASCII case folding for names, choices and file extensions (the one copy: sampler, schedule and
// class names, output extensions are compared case-insensitively; UTF-8 bytes >= 0x80 are kept).
#pragma once
#include <cctype>
#include <string>

namespace uvit {

inline std::string ascii_lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace uvit
