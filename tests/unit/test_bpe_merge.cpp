// bpe_merge (src/text/bpe_merge.cpp, the heap merge behind ClipTokenizer) against CLIP's official
// algorithm, kept here as the reference: hand-made merge tables whose official order differs from
// "lowest rank first, as soon as it appears", thousands of random tables over 2-4 letters, and the
// real vocabulary on long random words through ClipTokenizer::encode.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "bpe_reference.hpp"
#include "text/bpe_merge.hpp"
#include "uvit/clip.hpp"

using namespace uvit;
using uvit_test::reference_bpe;
using uvit_test::Table;

namespace {

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
  ClipTokenizer tok = ClipTokenizer::from_bpe_file(path);
  Table t = uvit_test::real_table(path, tok);
  ASSERT_EQ(t.strings.size(), 512u + 48894u) << "each merge makes a new string";

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
