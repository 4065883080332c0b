// Values quoted in error lines (docs/ux_audit.md, round 13).
#pragma once
#include <string>

namespace uvit {

// A value quoted in an error line, cut to its first 57 characters and "..." when longer than 60
// (at a UTF-8 character boundary), so that a 100 KB option or --set value still gives a line that
// names the thing and the start of the value. Every such quote goes through here.
inline std::string clipped(const std::string& s) {
  if (s.size() <= 60) return s;
  size_t n = 57;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n) + "...";
}

}  // namespace uvit
