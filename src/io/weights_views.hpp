// TensorReaders that are views: arrays already in memory, and another reader's tensors renamed or
// a subset of them. A loader written against TensorReader (the directory checked, then each tensor
// read into its place) so serves files, sub-models of a checkpoint and in-memory state_dicts alike.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "uvit/io.hpp"

namespace uvit {

// A state_dict held in memory, read by copying; `what` is its path() in errors. The arrays must
// outlive the reader.
class ArrayReader : public TensorReader {
 public:
  ArrayReader(const NamedArrays& arrays, const std::string& what);
  void read(size_t i, void* dst) override;
  void read_part(size_t i, uint64_t offset, size_t n, void* dst) override;

 private:
  const NamedArrays& arrays_;
};

// The tensors of another reader for which `rename` gives a non-empty name, under that name, in
// its order (e.g. SVG's "encoder.*" as DINOv3's own names); reads go to that reader.
class RenamedReader : public TensorReader {
 public:
  using Rename = std::function<std::string(const std::string&)>;
  RenamedReader(TensorReader& r, const Rename& rename);
  RenamedReader(std::unique_ptr<TensorReader> r, const Rename& rename);  // owns r
  // r's tensors picked[k].first, as picked[k].second names and shapes them (the same dtype and
  // bytes: a diffusers attention Linear as a 1x1 conv).
  RenamedReader(TensorReader& r, std::vector<std::pair<size_t, TensorInfo>> picked);
  void read(size_t i, void* dst) override { r_.read(index_.at(i), dst); }
  void read_part(size_t i, uint64_t offset, size_t n, void* dst) override {
    r_.read_part(index_.at(i), offset, n, dst);
  }

 private:
  std::unique_ptr<TensorReader> own_;
  TensorReader& r_;
  std::vector<size_t> index_;  // tensor i is r_'s tensor index_[i]
};

// rename for RenamedReader: the names that start with `prefix`, without it (strip) or as they are.
RenamedReader::Rename with_prefix(const std::string& prefix, bool strip);

}  // namespace uvit
