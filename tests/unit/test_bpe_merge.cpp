// bpe_merge (src/text/bpe_merge.cpp, the heap merge behind ClipTokenizer) against CLIP's official
// algorithm, kept here as the reference: hand-made merge tables whose official order differs from
// "lowest rank first, as soon as it appears", thousands of random tables over 2-4 letters, and the
// real vocabulary on long random words through ClipTokenizer::encode.
#include <gtest/gtest.h>
#include <zlib.h>

#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "text/bpe_merge.hpp"
#include "uvit/clip.hpp"

using namespace uvit;

namespace {

// CLIP's bpe() as the official code (and uvit.cpp before bpe_merge) runs it: each pass finds the
// lowest-ranked adjacent pair, then merges all its occurrences left to right, without overlap.
std::vector<int> reference_bpe(std::vector<int> w, const BpeMerges& merges) {
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

using Strings = std::vector<std::string>;

}  // namespace

// "abab" with (a,b) rank 0 and (ab,a) rank 1 listed before it in rank order: the official pass
// merges both a b before it sees ab a, though ab a has the lower rank.
TEST(BpeMerge, AllOccurrencesOfARankBeforeNewPairs) {
  Table t;
  t.rank = 3;
  t.merge("ab", "a");  // rank 3
  t.rank = 5;
  t.merge("a", "b");  // rank 5
  std::vector<int> w = {t.id("a"), t.id("b"), t.id("a"), t.id("b")};
  EXPECT_EQ(t.spell(bpe_merge(w, t.merges)), (Strings{"ab", "ab"}));
  EXPECT_EQ(t.spell(reference_bpe(w, t.merges)), (Strings{"ab", "ab"}));
  // "ababa": a b twice, then ab a (rank 3) at the end: [ab, aba].
  w.push_back(t.id("a"));
  EXPECT_EQ(t.spell(bpe_merge(w, t.merges)), (Strings{"ab", "aba"}));
}

// Repeated letters: left to right without overlap, then the pairs the pass made.
TEST(BpeMerge, RepeatedLetters) {
  Table t;
  t.merge("aa", "a");        // rank 0
  t.merge("a", "a");         // rank 1
  t.merge("aa", "aa");       // rank 2
  t.merge("aaaa", "a</w>");  // rank 3
  auto run = [&](const std::string& w) { return t.spell(bpe_merge(t.word(w), t.merges)); };
  EXPECT_EQ(run("a"), (Strings{"a</w>"}));
  EXPECT_EQ(run("aa"), (Strings{"a", "a</w>"}));
  // a a a a</w>: (a,a) -> [aa, a, a</w>]; (aa,a) -> [aaa, a</w>].
  EXPECT_EQ(run("aaaa"), (Strings{"aaa", "a</w>"}));
  // 5 a's + a</w>: (a,a) twice -> [aa, aa, a, a</w>]; (aa,a) at the second -> [aa, aaa, a</w>].
  EXPECT_EQ(run("aaaaaa"), (Strings{"aa", "aaa", "a</w>"}));
  // 8 a's + a</w>: [aa, aa, aa, aa, a</w>]; (aa,aa) -> [aaaa, aaaa, a</w>]; then aaaa a</w>.
  EXPECT_EQ(run("aaaaaaaaa"), (Strings{"aaaa", "aaaaa</w>"}));
  for (size_t n = 1; n <= 200; ++n) {
    std::vector<int> w = t.word(std::string(n, 'a'));
    EXPECT_EQ(bpe_merge(w, t.merges), reference_bpe(w, t.merges)) << n << " letters";
  }
}

TEST(BpeMerge, EmptyAndUnmergeable) {
  Table t;
  t.merge("a", "b");
  EXPECT_TRUE(bpe_merge({}, t.merges).empty());
  EXPECT_EQ(t.spell(bpe_merge(t.word("b"), t.merges)), (Strings{"b</w>"}));
  EXPECT_EQ(t.spell(bpe_merge(t.word("ba"), t.merges)), (Strings{"b", "a</w>"}));
}

// Random merge tables over 2-4 letters (pairs of tokens the table already makes, word ends
// included, some pairs repeated) on random words: the same ids as the reference.
TEST(BpeMerge, RandomTablesMatchReference) {
  std::mt19937 rng(20261207);
  int cases = 0, merged_somewhere = 0;
  for (int table = 0; table < 400; ++table) {
    Table t;
    std::string letters = std::string("abcd").substr(0, 2 + table % 3);
    Strings parts, ends;  // tokens without / with the word end
    for (char c : letters) {
      parts.push_back(std::string(1, c));
      ends.push_back(std::string(1, c) + "</w>");
    }
    int n_merges = 4 + int(rng() % 40);
    for (int m = 0; m < n_merges; ++m) {
      const std::string a = parts[rng() % parts.size()];
      bool end = rng() % 4 == 0;
      const std::string b = end ? ends[rng() % ends.size()] : parts[rng() % parts.size()];
      t.merge(a, b);
      (end ? ends : parts).push_back(a + b);
    }
    for (int k = 0; k < 10; ++k) {
      size_t len = 1 + rng() % (k < 8 ? 24 : 300);
      std::string w;
      for (size_t i = 0; i < len; ++i) w += letters[rng() % letters.size()];
      std::vector<int> s = t.word(w);
      std::vector<int> want = reference_bpe(s, t.merges);
      ASSERT_EQ(bpe_merge(s, t.merges), want) << "table " << table << ", word " << w;
      merged_somewhere += want.size() < s.size();
      ++cases;
    }
  }
  EXPECT_EQ(cases, 4000);
  EXPECT_GT(merged_somewhere, 3000);  // the tables do merge: the check compares real work
}

// The real vocabulary: ClipTokenizer::encode of long one-word prompts against the reference on the
// same merges list (ids as from_bpe_file gives them: byte symbols, their </w> forms, merges).
TEST(BpeMerge, RealVocabularyLongWords) {
  const std::string path =
      std::string(UVIT_TEST_SOURCE) + "/../data/clip/bpe_simple_vocab_16e6.txt.gz";
  gzFile f = gzopen(path.c_str(), "rb");
  ASSERT_NE(f, nullptr) << path;
  std::string text;
  char buf[1 << 16];
  for (int n; (n = gzread(f, buf, sizeof buf)) > 0;) text.append(buf, size_t(n));
  gzclose(f);
  ClipTokenizer tok = ClipTokenizer::from_bpe_file(path);

  Table t;
  for (int i = 0; i < 512; ++i) t.id(tok.token(i));  // bytes, then bytes</w>: ids 0..511
  size_t pos = text.find('\n') + 1;                  // skip "#version"
  for (int r = 0; r < 48894; ++r) {
    size_t nl = text.find('\n', pos), sp = text.find(' ', pos);
    std::string a = text.substr(pos, sp - pos), b = text.substr(sp + 1, nl - sp - 1);
    pos = nl + 1;
    t.merge(a, b);
    ASSERT_EQ(t.ids[a + b], 512 + r) << a << " " << b;
  }

  std::mt19937 rng(7);
  const std::vector<std::string> alphabets = {
      "abcdefghijklmnopqrstuvwxyz", "ab", "aeiou", "lo", "etaoinshr", "x"};
  for (const std::string& letters : alphabets)
    for (size_t len : {1, 2, 3, 7, 40, 500, 3000}) {
      std::string w;
      for (size_t i = 0; i < len; ++i) w += letters[rng() % letters.size()];
      // Letters are their own byte symbols in this vocabulary.
      ASSERT_EQ(tok.encode(w), reference_bpe(t.word(w), t.merges))
          << "alphabet " << letters << ", " << len << " letters";
    }
}
