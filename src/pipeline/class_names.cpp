// Class name tables: Fashion-MNIST's and CIFAR-10's labels in their datasets' documented order
// (zalandoresearch/fashion-mnist README, the CIFAR-10 batches.meta) and ImageNet-1k's
// (imagenet_classes.cpp), looked up by id, WordNet id or name.
#include "uvit/class_names.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <sstream>

#include "pipeline/imagenet_classes.hpp"
#include "uvit/ascii.hpp"

namespace uvit {
namespace {

std::vector<ClassName> simple(const std::vector<std::string>& names) {
  std::vector<ClassName> t;
  for (size_t i = 0; i < names.size(); ++i) t.push_back({int(i), "", names[i]});
  return t;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::vector<std::string> synonyms(const ClassName& c) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= c.names.size()) {
    const size_t comma = std::min(c.names.find(',', start), c.names.size());
    if (std::string s = trim(c.names.substr(start, comma - start)); !s.empty()) out.push_back(s);
    start = comma + 1;
  }
  return out;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

const std::vector<ClassName>& class_table(const std::string& dataset) {
  static const std::vector<ClassName> fmnist =
      simple({"T-shirt/top, t-shirt, top", "Trouser, trousers", "Pullover", "Dress", "Coat",
              "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot, boot"});
  static const std::vector<ClassName> cifar10 =
      simple({"airplane, plane", "automobile, car", "bird", "cat", "deer", "dog", "frog", "horse",
              "ship", "truck"});
  static const std::vector<ClassName> imagenet = [] {
    std::vector<ClassName> t;
    std::istringstream in(imagenet_class_table());
    for (std::string line; std::getline(in, line);) {
      const size_t sp = line.find(' ');
      t.push_back({int(t.size()), line.substr(0, sp), line.substr(sp + 1)});
    }
    return t;
  }();
  static const std::vector<ClassName> none;
  if (dataset == "fashion_mnist") return fmnist;
  if (dataset == "cifar10") return cifar10;
  if (dataset.rfind("imagenet", 0) == 0) return imagenet;  // imagenet, imagenet256_features, ...
  return none;
}

std::string class_display_name(const std::vector<ClassName>& t, int id) {
  for (const ClassName& c : t)
    if (c.id == id) {
      const auto s = synonyms(c);
      return s.empty() ? "" : s[0];
    }
  return "";
}

int find_class(const std::vector<ClassName>& t, int num_classes, const std::string& name_in) {
  const std::string name = ascii_lower(trim(name_in));
  if (name.empty()) return -1;
  if (name.find_first_not_of("0123456789") == std::string::npos) {
    if (name.size() > 9) return -1;
    const long v = std::strtol(name.c_str(), nullptr, 10);
    return v < num_classes ? int(v) : -1;
  }
  for (const ClassName& c : t) {
    if (c.id >= num_classes) continue;
    if (!c.wnid.empty() && ascii_lower(c.wnid) == name) return c.id;
    for (const std::string& s : synonyms(c))
      if (ascii_lower(s) == name) return c.id;
  }
  return -1;
}

std::vector<std::string> near_class_names(const std::vector<ClassName>& t, const std::string& name,
                                          int k) {
  const std::string q = ascii_lower(trim(name));
  std::vector<std::pair<size_t, std::string>> scored;
  for (const ClassName& c : t)
    for (const std::string& s : synonyms(c)) {
      const std::string l = ascii_lower(s);
      // A substring match ranks first; otherwise by edit distance.
      const size_t d = l.find(q) != std::string::npos ? 0 : edit_distance(q, l) + 1;
      scored.push_back({d, s});
    }
  std::stable_sort(scored.begin(), scored.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> out;
  for (const auto& [d, s] : scored) {
    // Only close ones: a substring, or a few edits (a third of the name) from it.
    if (int(out.size()) >= k || d > std::max<size_t>(2, q.size() / 3) + 1) break;
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  }
  return out;
}

}  // namespace uvit
