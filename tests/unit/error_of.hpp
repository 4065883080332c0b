// The message of the uvit::Error a call throws ("(no error)" when it returns): what the tests of
// one-line errors search.
#pragma once
#include <functional>
#include <string>

#include "uvit/error.hpp"

namespace uvit_test {

inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const uvit::Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace uvit_test
