// Per-word time of CLIP's BPE merge with the real vocabulary: the official loop (the reference in
// tests/unit/bpe_reference.hpp, what uvit.cpp ran before) against src/text/bpe_merge.cpp, on
// random words of 2..1024 letters and on ordinary words (docs/benchmarks.md, "CLIP BPE").
// Build after the library:
//   g++ -O3 -march=native -std=gnu++20 -fopenmp -Isrc -Iinclude -Itests/unit \
//       bench/bpe_word_bench.cpp build/libuvit.a -lz -o build/bpe_word_bench
#include <chrono>
#include <cstdio>
#include <random>

#include "bpe_reference.hpp"

using uvit_test::Table;

namespace {

// Microseconds per word of each algorithm over `words`, repeated to about `letters` letters.
void row(const char* label, Table& t, const std::vector<std::string>& words, size_t letters) {
  std::vector<std::vector<int>> ws;
  size_t total = 0;
  for (const auto& w : words) {
    ws.push_back(t.word(w));
    total += w.size();
  }
  const int reps = int(std::max<size_t>(1, letters / total));
  size_t sink = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < reps; ++r)
    for (auto& w : ws) sink += uvit_test::reference_bpe(w, t.merges).size();
  auto t1 = std::chrono::steady_clock::now();
  for (int r = 0; r < reps; ++r)
    for (auto& w : ws) sink += uvit::bpe_merge(w, t.merges).size();
  auto t2 = std::chrono::steady_clock::now();
  const double n = double(reps) * double(ws.size()) / 1e6;
  std::printf("| %s | %.3f | %.3f |\n", label, std::chrono::duration<double>(t1 - t0).count() / n,
              std::chrono::duration<double>(t2 - t1).count() / n);
  if (sink == 0) std::printf("(nothing merged)\n");
}

}  // namespace

int main() {
  const std::string path = "data/clip/bpe_simple_vocab_16e6.txt.gz";
  uvit::ClipTokenizer tok = uvit::ClipTokenizer::from_bpe_file(path);
  Table t = uvit_test::real_table(path, tok);
  std::printf("| words | official loop µs/word | heap µs/word |\n|---|---|---|\n");
  row("ordinary (a photo of ..., 21 words of 1-12 letters)", t,
      {"a",         "photo",  "of",    "cat",        "green",        "train",  "is",
       "coming",    "down",   "the",   "tracks",     "photographed", "at",     "dusk",
       "astronaut", "riding", "horse", "watercolor", "painting",     "highly", "detailed"},
      2000000);
  std::mt19937 rng(3);
  for (size_t len : {2, 4, 8, 16, 32, 64, 256, 1024}) {
    std::vector<std::string> words(50);
    for (auto& w : words)
      for (size_t i = 0; i < len; ++i) w += "abcdefghijklmnopqrstuvwxyz"[rng() % 26];
    std::string label = "random, " + std::to_string(len) + " letters";
    row(label.c_str(), t, words, len < 256 ? 2000000 : 200000);
  }
}
