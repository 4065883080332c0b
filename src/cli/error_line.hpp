// The one line an error is said in: main() prints it, and a rank whose checks failed sends it to
// rank 0 (checked_together), so that an out-of-memory refusal names the size options given either
// way (docs/distributed.md "Errors before the work").
#pragma once
#include <exception>
#include <functional>
#include <string>

namespace uvit::cli {

// What an out-of-memory error that smaller sizes may fix ends with: the size options of the
// command line ("; with --batch 8: give smaller values", "" when none was given). Set by main().
void set_memory_hint(std::function<std::string()> hint);

// `e` in one line: "out of memory" for std::bad_alloc, else its message; an out-of-memory error
// (the backends' or the allocator's, not a model whose state alone cannot fit) with the memory
// hint.
std::string error_line(const std::exception& e);

}  // namespace uvit::cli
