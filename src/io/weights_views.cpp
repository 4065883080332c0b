#include "io/weights_views.hpp"

#include <cstring>

#include "uvit/error.hpp"

namespace uvit {

ArrayReader::ArrayReader(const NamedArrays& arrays, const std::string& what) : arrays_(arrays) {
  path_ = what;
  tensors_.reserve(arrays.size());
  for (const auto& [name, a] : arrays) tensors_.push_back({name, a.dtype, a.shape});
}

void ArrayReader::read(size_t i, void* dst) {
  const Bytes& b = arrays_.at(i).second.data;
  if (!b.empty()) std::memcpy(dst, b.data(), b.size());
}

void ArrayReader::read_part(size_t i, uint64_t offset, size_t n, void* dst) {
  const Bytes& b = arrays_.at(i).second.data;
  UVIT_CHECK(offset <= b.size() && n <= b.size() - offset, path_, ": tensor '", tensors_.at(i).name,
             "': bytes [", offset, ", ", offset + n, ") past its ", b.size());
  if (n) std::memcpy(dst, b.data() + offset, n);
}

RenamedReader::RenamedReader(TensorReader& r, const Rename& rename) : r_(r) {
  path_ = r.path();
  metadata_ = r.metadata();
  for (size_t i = 0; i < r.tensors().size(); ++i) {
    TensorInfo t = r.tensors()[i];
    t.name = rename(t.name);
    if (t.name.empty()) continue;
    tensors_.push_back(std::move(t));
    index_.push_back(i);
  }
}

RenamedReader::RenamedReader(std::unique_ptr<TensorReader> r, const Rename& rename)
    : RenamedReader(*r, rename) {
  own_ = std::move(r);
}

RenamedReader::RenamedReader(TensorReader& r, std::vector<std::pair<size_t, TensorInfo>> picked)
    : r_(r) {
  path_ = r.path();
  metadata_ = r.metadata();
  for (auto& [i, t] : picked) {
    const TensorInfo& from = r.tensors().at(i);
    UVIT_CHECK(t.dtype == from.dtype && t.numel() == from.numel(), path_, ": tensor '", from.name,
               "' renamed to '", t.name, "' with other bytes");  // a bug, not bad input
    tensors_.push_back(std::move(t));
    index_.push_back(i);
  }
}

RenamedReader::Rename with_prefix(const std::string& prefix, bool strip) {
  return [prefix, strip](const std::string& name) {
    if (name.compare(0, prefix.size(), prefix) != 0) return std::string();
    return strip ? name.substr(prefix.size()) : name;
  };
}

}  // namespace uvit
