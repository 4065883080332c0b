#include "cli/error_line.hpp"

#include <new>
#include <utility>

#include "core/mem_limit.hpp"
#include "uvit/quote.hpp"

namespace uvit::cli {

namespace {
std::function<std::string()>& memory_hint() {
  static std::function<std::string()> hint;
  return hint;
}
}  // namespace

void set_memory_hint(std::function<std::string()> hint) { memory_hint() = std::move(hint); }

std::string error_line(const std::exception& e) {
  const bool bad_alloc = dynamic_cast<const std::bad_alloc*>(&e) != nullptr;
  const std::string line = bad_alloc ? "out of memory" : one_line(e.what());
  // No size option helps a model whose state alone cannot fit.
  const auto* refusal = dynamic_cast<const OutOfMemory*>(&e);
  const bool oom =
      bad_alloc || (dynamic_cast<const Error*>(&e) && line.rfind("out of memory", 0) == 0 &&
                    !(refusal && refusal->model_alone));
  return oom && memory_hint() ? line + memory_hint()() : line;
}

}  // namespace uvit::cli
