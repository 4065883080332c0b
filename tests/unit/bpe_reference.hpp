// CLIP's official BPE merge loop and small merge tables, for tests/unit/test_bpe_merge.cpp and
// bench/bpe_word_bench.cpp: the reference that src/text/bpe_merge.cpp must equal.
#pragma once
#include <zlib.h>

#include <limits>
#include <map>
#include <string>
#include <vector>

#include "text/bpe_merge.hpp"
#include "uvit/clip.hpp"

namespace uvit_test {

using uvit::bpe_pair_key;
using uvit::BpeMerges;

// CLIP's bpe() as the official code (and uvit.cpp before bpe_merge) runs it: each pass finds the
// lowest-ranked adjacent pair, then merges all its occurrences left to right, without overlap.
inline std::vector<int> reference_bpe(std::vector<int> w, const BpeMerges& merges) {
  while (w.size() > 1) {
    int best = std::numeric_limits<int>::max(), merged = -1;
    uint64_t key = 0;
    for (size_t i = 0; i + 1 < w.size(); ++i) {
      auto it = merges.find(bpe_pair_key(w[i], w[i + 1]));
      if (it != merges.end() && it->second.first < best) {
        best = it->second.first;
        merged = it->second.second;
        key = it->first;
      }
    }
    if (merged < 0) break;
    std::vector<int> nw;
    for (size_t i = 0; i < w.size(); ++i) {
      if (i + 1 < w.size() && bpe_pair_key(w[i], w[i + 1]) == key) {
        nw.push_back(merged);
        ++i;
      } else {
        nw.push_back(w[i]);
      }
    }
    w.swap(nw);
  }
  return w;
}

// A vocabulary of strings with ids in order of first appearance, and merges over it the way
// ClipTokenizer::build makes them (a repeated pair keeps its later rank).
struct Table {
  std::map<std::string, int> ids;
  std::vector<std::string> strings;
  BpeMerges merges;
  int rank = 0;

  int id(const std::string& s) {
    auto [it, added] = ids.insert({s, int(strings.size())});
    if (added) strings.push_back(s);
    return it->second;
  }
  void merge(const std::string& a, const std::string& b) {
    merges[bpe_pair_key(id(a), id(b))] = {rank++, id(a + b)};
  }
  // A word's symbols: one per letter, the last one carrying the word end.
  std::vector<int> word(const std::string& w) {
    std::vector<int> v;
    for (size_t i = 0; i < w.size(); ++i)
      v.push_back(id(std::string(1, w[i]) + (i + 1 == w.size() ? "</w>" : "")));
    return v;
  }
  std::vector<std::string> spell(const std::vector<int>& ids_) const {
    std::vector<std::string> v;
    for (int i : ids_) v.push_back(strings[size_t(i)]);
    return v;
  }
};

// The real merges list as ClipTokenizer::from_bpe_file numbers it (byte symbols 0..255, their </w>
// forms 256..511, merge r 512 + r); `tok` gives the byte symbols. Empty when the file is missing.
inline Table real_table(const std::string& path, const uvit::ClipTokenizer& tok) {
  Table t;
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) return t;
  std::string text;
  char buf[1 << 16];
  for (int n; (n = gzread(f, buf, sizeof buf)) > 0;) text.append(buf, size_t(n));
  gzclose(f);
  for (int i = 0; i < 512; ++i) t.id(tok.token(i));
  size_t pos = text.find('\n') + 1;  // skip "#version"
  for (int r = 0; r < 48894; ++r) {
    size_t nl = text.find('\n', pos), sp = text.find(' ', pos);
    t.merge(text.substr(pos, sp - pos), text.substr(sp + 1, nl - sp - 1));
    pos = nl + 1;
  }
  return t;
}

}  // namespace uvit_test
