// An integer environment variable: the launcher's rank counts, the test and tuning overrides.
#pragma once
#include <cstdlib>

namespace uvit {

// The value of `name` as a long; 0 when unset or empty.
inline long env_long(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? std::atol(v) : 0;
}

}  // namespace uvit
