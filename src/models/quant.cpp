// int8 / int4 weight-only quantisation: the file layout (docs/formats.md, "Quantised weights"),
// quantising a state_dict, and dequantising one layer for its GEMM.
#include "uvit/quant.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "uvit/error.hpp"

namespace uvit {

QuantFormat parse_quant_format(const std::string& s) {
  QuantFormat f;
  const size_t colon = s.find(':');
  const std::string kind = s.substr(0, colon);
  if (kind == "int8" && colon == std::string::npos) return f;
  if (kind != "int4")
    fail("--quantize: unknown format '", s,
         "' (expected int8, int4, int4:32, int4:64 or int4:128)");
  f.kind = QuantKind::Int4;
  if (colon != std::string::npos) {
    const std::string g = s.substr(colon + 1);
    f.group = (g == "32" || g == "64" || g == "128") ? std::stoi(g) : 0;
    UVIT_CHECK(f.group > 0, "--quantize: int4 group '", g, "' must be 32, 64 or 128");
  }
  return f;
}

bool quant_format_of(const std::map<std::string, std::string>& meta, const std::string& path,
                     QuantFormat* f) {
  auto it = meta.find(kQuantKey);
  if (it == meta.end()) return false;
  if (it->second == "int8") {
    *f = QuantFormat{};
    return true;
  }
  UVIT_CHECK(it->second == "int4", path, ": unknown ", kQuantKey, " '", it->second,
             "' (expected int8 or int4)");
  auto g = meta.find(kQuantGroupKey);
  UVIT_CHECK(g != meta.end(), path, ": an int4 file needs the metadata key ", kQuantGroupKey);
  *f = parse_quant_format("int4:" + g->second);
  return true;
}

std::map<std::string, std::string> quant_metadata(const QuantFormat& f) {
  std::map<std::string, std::string> m{{kQuantKey, f.name()}};
  if (f.kind == QuantKind::Int4) m[kQuantGroupKey] = std::to_string(f.group);
  return m;
}

bool quantizable(const ParamEntry& e, const QuantFormat& f) {
  if (!e.gemm) return false;
  const size_t in = e.numel / size_t(e.shape[0]);
  return f.kind == QuantKind::Int8 || in % size_t(f.group) == 0;
}

namespace {
// Symmetric scale of n values and their integers (round half to even, like torch.round).
float quantize_run(const float* w, size_t n, int qmax, int8_t* q) {
  float amax = 0.f;
  for (size_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(w[i]));
  const float s = amax / float(qmax);
  for (size_t i = 0; i < n; ++i) {
    const float v = s > 0.f ? std::nearbyint(w[i] / s) : 0.f;
    q[i] = int8_t(std::clamp(v, float(-qmax), float(qmax)));
  }
  return s;
}
}  // namespace

std::pair<Array, Array> quantize_weight(const float* w, const std::vector<int64_t>& shape,
                                        const QuantFormat& f) {
  size_t numel = 1;
  for (int64_t d : shape) numel *= size_t(d);
  const size_t out = size_t(shape.at(0)), in = numel / out;
  if (f.kind == QuantKind::Int8) {
    Array q(DType::I8, shape), s(DType::F32, {int64_t(out)});
    for (size_t r = 0; r < out; ++r)
      s.as<float>()[r] = quantize_run(w + r * in, in, 127, q.as<int8_t>() + r * in);
    return {std::move(q), std::move(s)};
  }
  const size_t G = size_t(f.group), ng = in / G;
  UVIT_CHECK(in % G == 0 && G % 2 == 0, "int4: row length ", in, " is not a multiple of the group ",
             G);
  Array q(DType::U8, {int64_t(out), int64_t(in / 2)}), s(DType::F32, {int64_t(out), int64_t(ng)});
  std::vector<int8_t> v(G);
  for (size_t r = 0; r < out; ++r)
    for (size_t g = 0; g < ng; ++g) {
      s.as<float>()[r * ng + g] = quantize_run(w + r * in + g * G, G, 7, v.data());
      uint8_t* dst = q.as<uint8_t>() + (r * in + g * G) / 2;
      for (size_t k = 0; k < G; k += 2) dst[k / 2] = uint8_t((v[k] + 8) | ((v[k + 1] + 8) << 4));
    }
  return {std::move(q), std::move(s)};
}

NamedArrays quantize_state_dict(NamedArrays sd, const ParamTable& t, const QuantFormat& f,
                                const std::string& what) {
  t.check(sd, what);
  std::map<std::string, Array*> by_name;
  for (auto& [name, a] : sd) by_name[name] = &a;
  NamedArrays out;
  out.reserve(sd.size() * 2);
  for (const ParamEntry& e : t.entries()) {
    Array& a = *by_name.at(e.name);
    if (!quantizable(e, f)) {
      out.emplace_back(e.name, std::move(a));
      continue;
    }
    const std::vector<float> w = a.to_f32();
    Bytes().swap(a.data);
    auto [q, s] = quantize_weight(w.data(), e.shape, f);
    out.emplace_back(e.name, std::move(q));
    out.emplace_back(e.name + kScaleSuffix, std::move(s));
  }
  return out;
}

void QuantTensor::dequantize(const QuantFormat& f, int c0, int n, float* dst) const {
  const size_t ld = size_t(in);
  const long rows = out;
  if (f.kind == QuantKind::Int8) {
    const auto* qv = reinterpret_cast<const int8_t*>(q.data());
#pragma omp parallel for schedule(static) if (size_t(rows) * n > (1 << 16))
    for (long r = 0; r < rows; ++r) {
      const int8_t* src = qv + size_t(r) * ld + c0;
      const float s = scale[size_t(r)];
      float* d = dst + size_t(r) * n;
      for (int j = 0; j < n; ++j) d[j] = float(src[j]) * s;
    }
    return;
  }
  const size_t G = size_t(f.group), ng = ld / G;
#pragma omp parallel for schedule(static) if (size_t(rows) * n > (1 << 16))
  for (long r = 0; r < rows; ++r) {
    const uint8_t* src = q.data() + size_t(r) * ld / 2;
    const float* s = scale.data() + size_t(r) * ng;
    float* d = dst + size_t(r) * n;
    for (int j = 0; j < n; ++j) {
      const size_t c = size_t(c0 + j);
      const int nib = (src[c / 2] >> ((c & 1) * 4)) & 15;
      d[j] = float(nib - 8) * s[c / G];
    }
  }
}

const QuantTensor* QuantWeights::find(size_t off) const {
  auto it = std::upper_bound(tensors.begin(), tensors.end(), off,
                             [](size_t o, const QuantTensor& t) { return o < t.offset; });
  if (it == tensors.begin()) return nullptr;
  --it;
  return off < it->offset + size_t(it->out) * size_t(it->in) ? &*it : nullptr;
}

float* QuantWeights::scratch(size_t n) const {
  if (scratch_.size() < n) scratch_.resize(n);
  return scratch_.data();
}

size_t QuantWeights::bytes() const {
  size_t b = 0;
  for (const QuantTensor& t : tensors) b += t.q.size() + t.scale.size() * sizeof(float);
  return b;
}

}  // namespace uvit
