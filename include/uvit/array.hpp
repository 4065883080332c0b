// Host arrays: the interchange type of the file formats (npy, safetensors, pth).
#pragma once
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace uvit {

enum class DType { F32, F16, BF16, F64, I64, I32, I16, I8, U8, Bool };

size_t dtype_size(DType t);
const char* dtype_name(DType t);  // "F32", "F16", "BF16", ... (safetensors spelling)

// fp16/bf16 <-> fp32 conversions (round to nearest even).
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);
float bf16_to_float(uint16_t h);
uint16_t float_to_bf16(float f);

// std::allocator, plus one way to leave the bytes as the heap gives them: constructing from
// NoInit does nothing (Array::uninitialised). Value-initialisation (resize, Array(t, s)) still
// zero-fills.
struct NoInit {};
template <class T>
struct ByteAllocator : std::allocator<T> {
  template <class U>
  struct rebind {  // C++17's std::allocator has its own, which would be inherited
    using other = ByteAllocator<U>;
  };
  ByteAllocator() = default;
  template <class U>
  ByteAllocator(const ByteAllocator<U>&) noexcept {}
  void construct(T*, NoInit) noexcept {}
};
using Bytes = std::vector<uint8_t, ByteAllocator<uint8_t>>;

struct Array {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  Bytes data;  // row-major, little endian

  Array() = default;
  Array(DType t, std::vector<int64_t> s);  // zero-filled
  // Bytes not set: for a reader that overwrites every one before the array is used (a short read
  // throws, and the array goes with the exception). Skips a pass over the memory (docs/formats.md,
  // "Loading weights").
  static Array uninitialised(DType t, std::vector<int64_t> s);

  int64_t numel() const;
  size_t nbytes() const { return data.size(); }
  template <class T>
  T* as() { return reinterpret_cast<T*>(data.data()); }
  template <class T>
  const T* as() const { return reinterpret_cast<const T*>(data.data()); }

  std::vector<float> to_f32() const;    // any float or integer dtype
  std::vector<int64_t> to_i64() const;  // integer dtypes only; floats must be integral
  static Array from_f32(std::vector<int64_t> shape, const float* src);
  static Array from_i64(std::vector<int64_t> shape, const int64_t* src);
  Array converted(DType t) const;  // float dtypes only
};

std::string shape_str(const std::vector<int64_t>& s);  // "[1, 257, 512]"

// An ordered list of named arrays (state_dict order is kept).
using NamedArrays = std::vector<std::pair<std::string, Array>>;

}  // namespace uvit
