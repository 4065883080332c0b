#include "uvit/params.hpp"

#include <cstring>
#include <set>

#include "uvit/error.hpp"

namespace uvit {

void ParamTable::add(const std::string& name, std::vector<int64_t> shape, bool frozen) {
  ParamEntry e;
  e.name = name;
  e.frozen = frozen;
  e.numel = 1;
  for (auto d : shape) e.numel *= size_t(d);
  e.shape = std::move(shape);
  e.offset = total_;
  total_ += e.numel;
  entries_.push_back(std::move(e));
}

std::vector<std::pair<size_t, size_t>> ParamTable::trained_ranges() const {
  std::vector<std::pair<size_t, size_t>> r;
  for (const ParamEntry& e : entries_) {
    if (e.frozen || e.numel == 0) continue;
    if (!r.empty() && r.back().second == e.offset)
      r.back().second += e.numel;
    else
      r.emplace_back(e.offset, e.offset + e.numel);
  }
  return r;
}

const ParamEntry* ParamTable::find(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

const ParamEntry& ParamTable::at(const std::string& name) const {
  const ParamEntry* e = find(name);
  if (!e) fail("no parameter named '", name, "'");
  return *e;
}

void ParamTable::check(const NamedArrays& sd, const std::string& what) const {
  for (const auto& [name, arr] : sd)
    UVIT_CHECK(name.rfind("adamw.", 0) != 0, what,
               ": a training state (optimizer moments), not network weights; give "
               "nnet_ema.safetensors (or nnet.safetensors) from the same run folder");
  std::set<std::string> seen;
  for (const auto& [name, arr] : sd) {
    const ParamEntry* e = find(name);
    if (!e)
      fail(what, ": unexpected tensor '", name, "' ", shape_str(arr.shape),
           " (not a parameter of this network config)");
    if (arr.shape != e->shape)
      fail(what, ": tensor '", name, "' has shape ", shape_str(arr.shape), ", the config expects ",
           shape_str(e->shape));
    if (!seen.insert(name).second) fail(what, ": tensor '", name, "' appears twice");
  }
  for (const auto& e : entries_)
    if (!seen.count(e.name))
      fail(what, ": missing tensor '", e.name, "' ", shape_str(e.shape), " (", sd.size(), " of ",
           entries_.size(), " tensors present)");
}

namespace {
void copy_in(const Array& arr, const ParamEntry& e, float* flat) {
  if (arr.dtype == DType::F32) {
    std::memcpy(flat + e.offset, arr.data.data(), e.numel * sizeof(float));
  } else {
    std::vector<float> v = arr.to_f32();
    std::memcpy(flat + e.offset, v.data(), e.numel * sizeof(float));
  }
}
}  // namespace

void ParamTable::load(const NamedArrays& sd, float* flat, const std::string& what) const {
  check(sd, what);
  for (const auto& [name, arr] : sd) copy_in(arr, at(name), flat);
}

void ParamTable::load(NamedArrays&& sd, float* flat, const std::string& what) const {
  check(sd, what);
  for (auto& [name, arr] : sd) {
    copy_in(arr, at(name), flat);
    std::vector<uint8_t>().swap(arr.data);
  }
}

NamedArrays ParamTable::export_arrays(const float* flat, DType dtype) const {
  NamedArrays out;
  out.reserve(entries_.size());
  for (const auto& e : entries_) {
    Array a = Array::from_f32(e.shape, flat + e.offset);
    if (dtype != DType::F32) a = a.converted(dtype);
    out.emplace_back(e.name, std::move(a));
  }
  return out;
}

}  // namespace uvit
