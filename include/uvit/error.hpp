// Errors: one exception type whose message is a single line naming the thing and the problem.
#pragma once
#include <new>
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

// Runs `f`; an error it throws comes back as one Error of `say(its message)`: the same error with
// what it means for the caller's work (a full disk: what is kept, how to go on). Running out of
// memory passes unchanged, as main() gives its own hint on that.
template <class F, class Say>
void saying(F&& f, Say&& say) {
  try {
    f();
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(say(std::string(e.what())));
  }
}

#define UVIT_CHECK(cond, ...)               \
  do {                                      \
    if (!(cond)) ::uvit::fail(__VA_ARGS__); \
  } while (0)

}  // namespace uvit
