// Human-readable class names of the class-conditional datasets, for `--class NAME`, the server's
// prompt -> class mapping and the metadata's prompt line.
#pragma once
#include <string>
#include <vector>

namespace uvit {

struct ClassName {
  int id;
  std::string wnid;   // WordNet id (ImageNet) or ""
  std::string names;  // comma-separated synonyms, the first is the display name
};

// The table for a preset's dataset name ("fashion_mnist", "cifar10", "imagenet*"); empty if none.
const std::vector<ClassName>& class_table(const std::string& dataset);
// The first synonym of class `id`, or "" when the table has no such class.
std::string class_display_name(const std::vector<ClassName>& t, int id);
// A decimal id in [0, num_classes), a WordNet id, or any synonym (case-insensitive); -1 if none.
int find_class(const std::vector<ClassName>& t, int num_classes, const std::string& name);
// Up to `k` synonyms closest to `name` (edit distance), for "did you mean" messages.
std::vector<std::string> near_class_names(const std::vector<ClassName>& t, const std::string& name,
                                          int k = 5);

}  // namespace uvit
