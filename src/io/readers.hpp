// The TensorReader of each weights format (io.hpp's open_weights chooses one).
#pragma once
#include <memory>
#include <string>

#include "uvit/io.hpp"

namespace uvit {

// A checkpoint's metadata (TensorReader::metadata) names where it keeps the tensors read: the
// entry (e.g. "ema" of {"model", "ema", "opt", "args"}, the one the official loaders take) and the
// file's top-level entries, comma-separated. Absent when the file is the state_dict itself.
inline constexpr const char* kEntryKey = "uvit.entry";
inline constexpr const char* kEntriesKey = "uvit.entries";

std::unique_ptr<TensorReader> open_safetensors_reader(const std::string& path);
std::unique_ptr<TensorReader> open_pth_reader(const std::string& path);
// Every tensor of the reader as an array, in its order.
NamedArrays read_all(TensorReader& r);

}  // namespace uvit
