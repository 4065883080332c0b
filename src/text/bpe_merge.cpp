// CLIP's bpe() rescans the word once per merged rank (quadratic in a word's length); here a heap of
// candidate pairs keyed by (rank, position) finds each next rank, with stale entries skipped when
// popped. One pass pops every entry of the lowest rank, merges them left to right, and only then
// adds the pairs it made, even those of a lower rank: the official pass merges all occurrences of
// its pair before it looks at any new pair ("abab" with (a,b) rank 5 and (ab,a) rank 3 is
// [ab, ab], not [aba, b]).
#include "text/bpe_merge.hpp"

#include <algorithm>

namespace uvit {

namespace {

struct Candidate {
  int rank, pos;    // pos: original index of the left symbol
  int left, right;  // the pair's ids when pushed; stale once either symbol changed
  int merged;
};

// Min-heap order on (rank, pos): a rank's occurrences come out left to right.
bool later(const Candidate& a, const Candidate& b) {
  return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
}

}  // namespace

std::vector<int> bpe_merge(std::vector<int> sym, const BpeMerges& merges) {
  const int n = int(sym.size());
  if (n < 2) return sym;
  // Live symbols form a list over their original indices; a merge keeps the left index.
  const size_t count = sym.size();
  std::vector<int> next(count), prev(count), pass_of(count, -1);
  for (int i = 0; i < n; ++i) {
    next[size_t(i)] = i + 1 < n ? i + 1 : -1;
    prev[size_t(i)] = i - 1;
  }
  std::vector<Candidate> heap;
  auto candidate = [&](int p) {
    int q = next[size_t(p)];
    if (q < 0) return false;
    auto it = merges.find(bpe_pair_key(sym[size_t(p)], sym[size_t(q)]));
    if (it == merges.end()) return false;
    heap.push_back({it->second.first, p, sym[size_t(p)], sym[size_t(q)], it->second.second});
    return true;
  };
  for (int i = 0; i + 1 < n; ++i) candidate(i);
  std::make_heap(heap.begin(), heap.end(), later);

  std::vector<Candidate> batch;
  std::vector<int> merged_at;
  for (int pass = 0; !heap.empty(); ++pass) {
    const int rank = heap.front().rank;
    batch.clear();
    while (!heap.empty() && heap.front().rank == rank) {
      std::pop_heap(heap.begin(), heap.end(), later);
      batch.push_back(heap.back());
      heap.pop_back();
    }
    merged_at.clear();
    for (const Candidate& c : batch) {
      const int p = c.pos, q = next[size_t(p)];
      // A consumed symbol has prev == -2; a changed one no longer matches the pair.
      if (prev[size_t(p)] == -2 || q < 0 || sym[size_t(p)] != c.left || sym[size_t(q)] != c.right)
        continue;
      sym[size_t(p)] = c.merged;
      next[size_t(p)] = next[size_t(q)];
      if (next[size_t(q)] >= 0) prev[size_t(next[size_t(q)])] = p;
      prev[size_t(q)] = -2;
      pass_of[size_t(p)] = pass;
      merged_at.push_back(p);
    }
    // The pairs this pass made: (p, next) for each merged p, and (prev, p) unless prev merged too
    // (its own (p', next) entry is that pair).
    for (int p : merged_at) {
      bool pushed = candidate(p);
      if (pushed) std::push_heap(heap.begin(), heap.end(), later);
      int l = prev[size_t(p)];
      if (l >= 0 && pass_of[size_t(l)] != pass && candidate(l))
        std::push_heap(heap.begin(), heap.end(), later);
    }
  }
  std::vector<int> out;
  for (int p = 0; p >= 0; p = next[size_t(p)]) out.push_back(sym[size_t(p)]);
  return out;
}

}  // namespace uvit
