// Weight-only quantisation of GEMM weights (docs/formats.md, "Quantised weights"): int8 with one
// fp32 scale per output channel, or int4 with one fp32 scale per group of `group` inputs of a row.
// The file is a safetensors whose metadata key "uvit.quantization" names the format; a network that
// loads it keeps the integers and dequantises one layer at a time for its GEMM
// (layers::linear_fwd), so the fp32 weights never exist as a whole.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "uvit/array.hpp"
#include "uvit/params.hpp"

namespace uvit {

enum class QuantKind { Int8, Int4 };
struct QuantFormat {
  QuantKind kind = QuantKind::Int8;
  int group = 32;  // int4: inputs per scale
  std::string name() const { return kind == QuantKind::Int8 ? "int8" : "int4"; }
  int qmax() const { return kind == QuantKind::Int8 ? 127 : 7; }
};
inline constexpr const char* kQuantKey = "uvit.quantization";  // "int8" or "int4"
inline constexpr const char* kQuantGroupKey = "uvit.quant_group";
inline constexpr const char* kScaleSuffix = "_scale";  // NAME.weight -> NAME.weight_scale

// "int8", "int4" (group 32), "int4:64" ...; throws naming --quantize otherwise.
QuantFormat parse_quant_format(const std::string& s);
// The format a file's metadata declares; false when the file is not quantised. `path` for errors.
bool quant_format_of(const std::map<std::string, std::string>& meta, const std::string& path,
                     QuantFormat* f);
// The metadata entries that mark a file as quantised in format f.
std::map<std::string, std::string> quant_metadata(const QuantFormat& f);

// One GEMM weight [out, in] as integers: int8 values (out*in bytes), or int4 pairs packed two to
// a byte (element 2k in the low nibble, 2k + 1 in the high one, each stored as q + 8), with
// `scale` [out] (int8) or [out, in / group] (int4); w ~= q * scale.
struct QuantTensor {
  std::string name;
  size_t offset = 0;  // of the weight in the parameter table (floats)
  int out = 0, in = 0;
  std::vector<uint8_t> q;
  std::vector<float> scale;
  // Columns [c0, c0 + n) of every row into dst [out, n] (dst[r, j] = q * scale, in fp32).
  void dequantize(const QuantFormat& f, int c0, int n, float* dst) const;
};

// Whether a weight is quantised in format f: a GEMM weight (ParamEntry::gemm), and for int4 a
// row length that is a multiple of the group (others, e.g. a 16-input patch embedding, stay fp32).
bool quantizable(const ParamEntry& e, const QuantFormat& f);
// w [out, in] fp32 -> the file's two arrays: the integers (I8 [shape] for int8, U8 [out, in/2]
// for int4) and the scales (F32). Symmetric: scale = max|w| / qmax over the row or group,
// q = round-half-even(w / scale) (0 where the scale is 0).
std::pair<Array, Array> quantize_weight(const float* w, const std::vector<int64_t>& shape,
                                        const QuantFormat& f);
// A state_dict (any float dtypes) of a network whose table has its GEMM weights marked, in table
// order: every quantizable weight becomes NAME.weight (integers) + NAME.weight_scale; the others
// are kept as they are.
NamedArrays quantize_state_dict(NamedArrays sd, const ParamTable& t, const QuantFormat& f,
                                const std::string& what);

// The quantised weights of a loaded network and the scratch one dequantised layer lives in.
class QuantWeights {
 public:
  QuantFormat format;
  std::string path;
  std::vector<QuantTensor> tensors;  // ascending offset
  // The tensor whose weight holds parameter offset `off` (a column slice starts inside a row),
  // or nullptr.
  const QuantTensor* find(size_t off) const;
  // n floats (grown on demand, reused by every layer).
  float* scratch(size_t n) const;
  size_t bytes() const;  // integers and scales

 private:
  mutable std::vector<float> scratch_;
};

}  // namespace uvit
