// Host arrays: dtype helpers, fp16/bf16 conversions (round to nearest even) and dtype conversion.
#include "uvit/array.hpp"

#include <cmath>
#include <iterator>
#include <limits>

#include "uvit/error.hpp"

namespace uvit {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32:
      return 4;
    case DType::F16:
      return 2;
    case DType::BF16:
      return 2;
    case DType::F64:
      return 8;
    case DType::I64:
      return 8;
    case DType::I32:
      return 4;
    case DType::I16:
      return 2;
    case DType::I8:
      return 1;
    case DType::U8:
      return 1;
    case DType::Bool:
      return 1;
  }
  fail("dtype_size: invalid dtype ", static_cast<int>(t));
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "F32";
    case DType::F16:
      return "F16";
    case DType::BF16:
      return "BF16";
    case DType::F64:
      return "F64";
    case DType::I64:
      return "I64";
    case DType::I32:
      return "I32";
    case DType::I16:
      return "I16";
    case DType::I8:
      return "I8";
    case DType::U8:
      return "U8";
    case DType::Bool:
      return "BOOL";
  }
  fail("dtype_name: invalid dtype ", static_cast<int>(t));
}

namespace {

uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Shifts m right by s (1..31) rounding to nearest, ties to even.
uint32_t shift_rne(uint32_t m, unsigned s) {
  uint32_t r = m >> s, rem = m & ((1u << s) - 1), half = 1u << (s - 1);
  if (rem > half || (rem == half && (r & 1))) ++r;
  return r;
}

bool is_float(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::F64;
}

int64_t checked_numel(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    UVIT_CHECK(d >= 0, "array shape ", shape_str(s), " has a negative dimension");
    UVIT_CHECK(!__builtin_mul_overflow(n, d, &n), "array shape ", shape_str(s), " overflows");
  }
  return n;
}

}  // namespace

float half_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16, e = (h >> 10) & 0x1F, m = h & 0x3FF;
  if (e == 0) {
    // Zero or subnormal: m * 2^-24 is exact in float.
    float v = float(m) * 5.9604644775390625e-8f;
    return bits_f32(f32_bits(v) | sign);
  }
  if (e == 31) return bits_f32(sign | 0x7F800000u | (m << 13));  // inf / nan (payload kept)
  return bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

uint16_t float_to_half(float f) {
  uint32_t x = f32_bits(f), ax = x & 0x7FFFFFFFu;
  uint16_t sign = uint16_t((x >> 16) & 0x8000);
  if (ax > 0x7F800000u) return sign | 0x7E00 | uint16_t((ax >> 13) & 0x3FF);  // quiet nan
  if (ax >= 0x47800000u) return sign | 0x7C00;  // >= 65536 (and inf): inf
  uint32_t e = ax >> 23;
  if (e < 113) {
    // Below the smallest normal half (2^-14): subnormal in units of 2^-24.
    if (e < 102) return sign;  // < 2^-25: rounds to zero
    uint32_t m = (ax & 0x7FFFFF) | 0x800000;
    return sign | uint16_t(shift_rne(m, 126 - e));  // may round up to the smallest normal
  }
  // Normal: rebias, round the low 13 mantissa bits; a carry may ripple into the exponent (to inf).
  uint32_t v = ((e - 112) << 23) | (ax & 0x7FFFFF);
  return sign | uint16_t(shift_rne(v, 13));
}

float bf16_to_float(uint16_t h) { return bits_f32(uint32_t(h) << 16); }

uint16_t float_to_bf16(float f) {
  uint32_t x = f32_bits(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return uint16_t((x >> 16) | 0x40);  // quiet nan
  return uint16_t((x + 0x7FFF + ((x >> 16) & 1)) >> 16);
}

namespace {

size_t checked_nbytes(DType t, const std::vector<int64_t>& shape) {
  size_t bytes;
  UVIT_CHECK(!__builtin_mul_overflow(size_t(checked_numel(shape)), dtype_size(t), &bytes),
             "array shape ", shape_str(shape), " is too large");
  return bytes;
}

// Counts 0..n and yields NoInit: Bytes built from a range of them is allocated, never written.
struct NoInitCount {
  using iterator_category = std::forward_iterator_tag;
  using value_type = NoInit;
  using difference_type = std::ptrdiff_t;
  using pointer = const NoInit*;
  using reference = NoInit;
  size_t i = 0;
  NoInit operator*() const { return {}; }
  NoInitCount& operator++() {
    ++i;
    return *this;
  }
  NoInitCount operator++(int) { return {i++}; }
  bool operator==(const NoInitCount& o) const { return i == o.i; }
};

}  // namespace

Array::Array(DType t, std::vector<int64_t> s) : dtype(t), shape(std::move(s)) {
  data.assign(checked_nbytes(t, shape), 0);
}

Array Array::uninitialised(DType t, std::vector<int64_t> s) {
  Array a;
  a.dtype = t;
  a.shape = std::move(s);
  a.data = Bytes(NoInitCount{0}, NoInitCount{checked_nbytes(t, a.shape)});
  return a;
}

int64_t Array::numel() const { return checked_numel(shape); }

std::vector<float> Array::to_f32() const {
  size_t n = data.size() / dtype_size(dtype);
  std::vector<float> out(n);
  const uint8_t* p = data.data();
  switch (dtype) {
    case DType::F32:
      if (n) std::memcpy(out.data(), p, n * 4);
      break;
    case DType::F16:
      for (size_t i = 0; i < n; ++i) out[i] = half_to_float(as<uint16_t>()[i]);
      break;
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) out[i] = bf16_to_float(as<uint16_t>()[i]);
      break;
    case DType::F64:
      for (size_t i = 0; i < n; ++i) out[i] = float(as<double>()[i]);
      break;
    case DType::I64:
      for (size_t i = 0; i < n; ++i) out[i] = float(as<int64_t>()[i]);
      break;
    case DType::I32:
      for (size_t i = 0; i < n; ++i) out[i] = float(as<int32_t>()[i]);
      break;
    case DType::I16:
      for (size_t i = 0; i < n; ++i) out[i] = float(as<int16_t>()[i]);
      break;
    case DType::I8:
      for (size_t i = 0; i < n; ++i) out[i] = float(as<int8_t>()[i]);
      break;
    case DType::U8:
      for (size_t i = 0; i < n; ++i) out[i] = float(p[i]);
      break;
    case DType::Bool:
      for (size_t i = 0; i < n; ++i) out[i] = p[i] ? 1.f : 0.f;
      break;
  }
  return out;
}

std::vector<int64_t> Array::to_i64() const {
  size_t n = data.size() / dtype_size(dtype);
  std::vector<int64_t> out(n);
  const uint8_t* p = data.data();
  switch (dtype) {
    case DType::I64:
      if (n) std::memcpy(out.data(), p, n * 8);
      break;
    case DType::I32:
      for (size_t i = 0; i < n; ++i) out[i] = as<int32_t>()[i];
      break;
    case DType::I16:
      for (size_t i = 0; i < n; ++i) out[i] = as<int16_t>()[i];
      break;
    case DType::I8:
      for (size_t i = 0; i < n; ++i) out[i] = as<int8_t>()[i];
      break;
    case DType::U8:
      for (size_t i = 0; i < n; ++i) out[i] = p[i];
      break;
    case DType::Bool:
      for (size_t i = 0; i < n; ++i) out[i] = p[i] ? 1 : 0;
      break;
    default: {
      // Float arrays are accepted when every value is an integer in the int64 range.
      for (size_t i = 0; i < n; ++i) {
        double v;
        if (dtype == DType::F64)
          v = as<double>()[i];
        else if (dtype == DType::F32)
          v = as<float>()[i];
        else if (dtype == DType::F16)
          v = half_to_float(as<uint16_t>()[i]);
        else
          v = bf16_to_float(as<uint16_t>()[i]);
        UVIT_CHECK(std::isfinite(v) && v == std::floor(v) && v >= -9.2233720368547758e18 &&
                       v < 9.2233720368547758e18,
                   "to_i64: ", dtype_name(dtype), " array element ", i, " (", v,
                   ") is not an integer");
        out[i] = int64_t(v);
      }
    }
  }
  return out;
}

Array Array::from_f32(std::vector<int64_t> shape, const float* src) {
  Array a(DType::F32, std::move(shape));
  if (!a.data.empty()) std::memcpy(a.data.data(), src, a.data.size());
  return a;
}

Array Array::from_i64(std::vector<int64_t> shape, const int64_t* src) {
  Array a(DType::I64, std::move(shape));
  if (!a.data.empty()) std::memcpy(a.data.data(), src, a.data.size());
  return a;
}

Array Array::converted(DType t) const {
  UVIT_CHECK(is_float(dtype) && is_float(t), "Array::converted: only float dtypes convert (",
             dtype_name(dtype), " -> ", dtype_name(t), ")");
  if (t == dtype) return *this;
  Array out(t, shape);
  size_t n = out.data.size() / dtype_size(t);
  // Everything goes through float (F64 -> F16/BF16 may double-round in rare ties; acceptable).
  std::vector<float> f;
  const float* src;
  if (dtype == DType::F32) {
    src = as<float>();
  } else {
    f = to_f32();
    src = f.data();
  }
  switch (t) {
    case DType::F32:
      if (n) std::memcpy(out.data.data(), src, n * 4);
      break;
    case DType::F16:
      for (size_t i = 0; i < n; ++i) out.as<uint16_t>()[i] = float_to_half(src[i]);
      break;
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) out.as<uint16_t>()[i] = float_to_bf16(src[i]);
      break;
    case DType::F64:
      if (dtype == DType::F64) break;
      for (size_t i = 0; i < n; ++i) out.as<double>()[i] = src[i];
      break;
    default:
      break;
  }
  return out;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) r += ", ";
    r += std::to_string(s[i]);
  }
  return r + "]";
}

}  // namespace uvit
