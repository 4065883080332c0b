#include "cli/checked_together.hpp"

#include <cstdint>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "uvit/error.hpp"
#include "uvit/quote.hpp"

namespace uvit::cli {

namespace {
// "rank 1" or "ranks 1, 3".
std::string rank_list(const std::vector<int>& ranks) {
  std::string s = ranks.size() > 1 ? "ranks" : "rank";
  for (size_t i = 0; i < ranks.size(); ++i) s += cat(i ? ", " : " ", ranks[i]);
  return s;
}

// Rank 0's line for the ranks' messages (at least one failed): the lowest failing rank's error,
// named unless every rank met it or rank 0 alone did (a check only the lead makes, as eval's
// manifest: the job's refusal), and any rank that failed otherwise.
std::string verdict(const std::vector<std::string>& msgs, const std::vector<bool>& failed) {
  size_t first = 0;
  while (!failed[first]) ++first;
  const std::string& m = msgs[first];
  std::vector<int> same, other;
  for (size_t r = 0; r < msgs.size(); ++r)
    if (failed[r]) (msgs[r] == m ? same : other).push_back(int(r));
  const bool unnamed = same.size() == msgs.size() || same == std::vector<int>{0};
  std::string line = unnamed ? m : rank_list(same) + ": " + m;
  if (!other.empty()) line += " (" + rank_list(other) + " failed too, with another error)";
  return line;
}
}  // namespace

void checked_together(Comm& c, const std::function<void()>& checks) {
  if (c.size() == 1) return checks();
  bool failed = false;
  std::string mine;
  try {
    checks();
  } catch (const std::bad_alloc&) {
    failed = true, mine = "out of memory";
  } catch (const std::exception& e) {
    failed = true, mine = one_line(e.what());
  }
  if (!any_rank(c, failed)) return;
  // Each rank's message length (+1: a failure with an empty message is still one), then the
  // messages to rank 0.
  const uint64_t len = failed ? mine.size() + 1 : 0;
  std::vector<uint64_t> lens(size_t(c.size()));
  c.allgather_bytes(&len, sizeof len, lens.data());
  const std::vector<uint8_t> all = c.gatherv_bytes(mine.data(), failed ? mine.size() : 0, 0);
  std::string line;
  if (c.rank() == 0) {
    std::vector<std::string> msgs(lens.size());
    std::vector<bool> fails(lens.size());
    size_t at = 0;
    for (size_t r = 0; r < lens.size(); ++r) {
      fails[r] = lens[r] > 0;
      const size_t n = fails[r] ? size_t(lens[r] - 1) : 0;
      msgs[r].assign(reinterpret_cast<const char*>(all.data()) + at, n);
      at += n;
    }
    line = verdict(msgs, fails);
  }
  // Every rank exits 1 without MPI_Abort; main() prints the line from rank 0 only.
  throw SameOnEveryRank(line);
}

}  // namespace uvit::cli
