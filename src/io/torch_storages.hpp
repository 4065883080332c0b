// The torch storage classes of a torch.save pickle and the dtype of each, for the .pth reader and
// writer (torch/storage.py's legacy typed storages, which torch.save still names in its pickles).
#pragma once
#include <utility>

#include "uvit/array.hpp"

namespace uvit::torch_format {

inline constexpr std::pair<const char*, DType> kStorages[] = {
    {"torch.FloatStorage", DType::F32},     {"torch.HalfStorage", DType::F16},
    {"torch.BFloat16Storage", DType::BF16}, {"torch.DoubleStorage", DType::F64},
    {"torch.LongStorage", DType::I64},      {"torch.IntStorage", DType::I32},
    {"torch.ShortStorage", DType::I16},     {"torch.CharStorage", DType::I8},
    {"torch.ByteStorage", DType::U8},       {"torch.BoolStorage", DType::Bool}};

}  // namespace uvit::torch_format
