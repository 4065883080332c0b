// Readers for the official pre-encoded feature files.
#pragma once
#include <cstdint>
#include <string>

#include "uvit/array.hpp"

namespace uvit::data {

// One ImageNet feature file: np.save of a 2-element object array (moments, label), i.e. a .npy with
// descr '|O' whose payload is a pickle. Only the numpy globals such a file uses are understood
// (_reconstruct, ndarray, dtype, scalar); nothing is executed.
struct FeatureRecord {
  Array moments;
  int64_t label = -1;
};
FeatureRecord load_feature_record(const std::string& path);
FeatureRecord parse_feature_record(const uint8_t* p, size_t n, const std::string& path);

}  // namespace uvit::data
