// Writing torch.save's zip format (docs/formats.md, "Writing .pth").
#pragma once
#include <cstdint>
#include <string>

#include "io/zip.hpp"
#include "uvit/array.hpp"

namespace uvit {

// torch.save's zip format (torch >= 1.6), for torch.load and torch.load(weights_only=True): an
// OrderedDict of the tensors in order, or {entry: it} when `entry` is given (DiT's "ema").
// Atomic; each tensor goes from its Array straight to the file. `zip64_at` lowers the zip64
// threshold (4 GiB), for tests only.
void save_pth(const std::string& path, const NamedArrays& tensors, const std::string& entry = "",
              uint64_t zip64_at = zip::kZip64Limit);

}  // namespace uvit
