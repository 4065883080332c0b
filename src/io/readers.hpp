// The TensorReader of each weights format (io.hpp's open_weights chooses one).
#pragma once
#include <memory>
#include <string>

#include "uvit/io.hpp"

namespace uvit {

std::unique_ptr<TensorReader> open_safetensors_reader(const std::string& path);
std::unique_ptr<TensorReader> open_pth_reader(const std::string& path);
// Every tensor of the reader as an array, in its order.
NamedArrays read_all(TensorReader& r);

}  // namespace uvit
