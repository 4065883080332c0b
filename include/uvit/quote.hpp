// Values quoted in lines of output: errors (docs/ux_audit.md, round 13) and results.
#pragma once
#include <cstdio>
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

// A line of output is one line (README.md "On the command line"): an error, a warning, or a result
// a script reads on stdout, also when it quotes a name that holds a line break (a path typed as
// $'a\nb'). Control characters other than tab are written as escapes (\n, \r, \xNN); ordinary
// names print as they are.
inline std::string one_line(const std::string& s) {
  std::string out;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    } else {
      out += ch;
    }
  }
  return out;
}

}  // namespace uvit
