// The (name, shape, offset) table of a network's parameters, generated from its config in
// official state_dict order. Parameters, gradients, optimizer moments and EMA each live in one flat
// buffer laid out by this table.
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "uvit/array.hpp"
#include "uvit/io.hpp"

namespace uvit {

struct ParamEntry {
  std::string name;
  std::vector<int64_t> shape;
  size_t offset = 0;  // in floats
  size_t numel = 0;
  // Not trained (requires_grad=False or a buffer): the optimizer neither updates nor decays it.
  bool frozen = false;
  // Set when a network binds the tensor as a GEMM weight (layers::linear): the weights int8/int4
  // quantisation may replace (docs/formats.md, "Quantised weights").
  mutable bool gemm = false;
};

using Ranges = std::vector<std::pair<size_t, size_t>>;
// The first of sorted, disjoint [begin, end) ranges that ends after float `off` (end() if none):
// off lies in it when it begins at or before off.
inline Ranges::const_iterator range_ending_after(const Ranges& r, size_t off) {
  return std::upper_bound(
      r.begin(), r.end(), off,
      [](size_t o, const std::pair<size_t, size_t>& x) { return o < x.second; });
}

class ParamTable {
 public:
  void add(const std::string& name, std::vector<int64_t> shape, bool frozen = false);
  const std::vector<ParamEntry>& entries() const { return entries_; }
  size_t total() const { return total_; }
  // The [begin, end) float ranges of the trained parameters, in order (frozen ones left out).
  // Kept up to date by add(), so the optimizer reads it every step without rebuilding it.
  const std::vector<std::pair<size_t, size_t>>& trained_ranges() const { return trained_; }
  // Whether float `off` of the flat vector lies in a trained tensor (a binary search of
  // trained_ranges(): cheap enough for every layer of a backward pass).
  bool trains(size_t off) const;
  // Marks every entry for which `f` holds frozen (train.finetune partial: the network's backward
  // then skips their gradients and the optimizer their moments); frozen entries stay frozen.
  void freeze_if(const std::function<bool(const ParamEntry&)>& f);
  const ParamEntry* find(const std::string& name) const;  // nullptr when absent
  const ParamEntry& at(const std::string& name) const;    // throws when absent

  // Checks every name and shape of a state_dict; the error names the first missing, unexpected,
  // duplicated or mismatched tensor. `what` names the source (a file path).
  void check(const NamedArrays& sd, const std::string& what) const;
  void check(const std::vector<TensorInfo>& tensors, const std::string& what) const;

 private:
  void add_trained(const ParamEntry& e);  // appends e to trained_ unless frozen or empty
  std::vector<ParamEntry> entries_;
  std::vector<std::pair<size_t, size_t>> trained_;  // adjacent trained entries merged
  size_t total_ = 0;
};

}  // namespace uvit
