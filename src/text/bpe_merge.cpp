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
  // Live symbols form a list over their original indices; a merge keeps the left index. prev is -2
  // for a consumed symbol; pass: the last pass that merged into the symbol.
  struct Node {
    int prev, next, pass;
  };
  std::vector<Node> node(sym.size());
  for (int i = 0; i < n; ++i) node[size_t(i)] = {i - 1, i + 1 < n ? i + 1 : -1, -1};
  std::vector<Candidate> heap;
  heap.reserve(sym.size());
  auto candidate = [&](int p) {
    int q = node[size_t(p)].next;
    if (q < 0) return false;
    auto it = merges.find(bpe_pair_key(sym[size_t(p)], sym[size_t(q)]));
    if (it == merges.end()) return false;
    heap.push_back({it->second.first, p, sym[size_t(p)], sym[size_t(q)], it->second.second});
    return true;
  };
  for (int i = 0; i + 1 < n; ++i) candidate(i);
  std::make_heap(heap.begin(), heap.end(), later);

  std::vector<int> merged_at;
  for (int pass = 0; !heap.empty(); ++pass) {
    // Pop this rank's entries (left to right) and merge those still current; nothing is pushed
    // until the pass ends.
    const int rank = heap.front().rank;
    merged_at.clear();
    while (!heap.empty() && heap.front().rank == rank) {
      std::pop_heap(heap.begin(), heap.end(), later);
      const Candidate c = heap.back();
      heap.pop_back();
      Node& a = node[size_t(c.pos)];
      const int q = a.next;
      if (a.prev == -2 || q < 0 || sym[size_t(c.pos)] != c.left || sym[size_t(q)] != c.right)
        continue;
      sym[size_t(c.pos)] = c.merged;
      a.next = node[size_t(q)].next;
      if (a.next >= 0) node[size_t(a.next)].prev = c.pos;
      node[size_t(q)].prev = -2;
      a.pass = pass;
      merged_at.push_back(c.pos);
    }
    // The pairs this pass made: (p, next) for each merged p, and (prev, p) unless prev merged too
    // (its own (p', next) entry is that pair).
    for (int p : merged_at) {
      if (candidate(p)) std::push_heap(heap.begin(), heap.end(), later);
      const int l = node[size_t(p)].prev;
      if (l >= 0 && node[size_t(l)].pass != pass && candidate(l))
        std::push_heap(heap.begin(), heap.end(), later);
    }
  }
  // Compact in place: live indices increase, so each lands at or before its own index.
  size_t k = 0;
  for (int p = 0; p >= 0; p = node[size_t(p)].next) sym[k++] = sym[size_t(p)];
  sym.resize(k);
  return sym;
}

}  // namespace uvit
