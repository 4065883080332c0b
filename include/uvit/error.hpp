// Errors: one exception type whose message is a single line naming the thing and the problem.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace uvit {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Concatenates its arguments with operator<< (g++ 12 has no std::format).
template <class... A>
std::string cat(const A&... a) {
  std::ostringstream s;
  (s << ... << a);
  return s.str();
}

template <class... A>
[[noreturn]] void fail(const A&... a) {
  throw Error(cat(a...));
}

#define UVIT_CHECK(cond, ...)               \
  do {                                      \
    if (!(cond)) ::uvit::fail(__VA_ARGS__); \
  } while (0)

}  // namespace uvit
