#include "cli/checked_together.hpp"

#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "cli/error_line.hpp"
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

namespace {
// Each rank's part of the exchange: its message's length + 1 (0: its checks passed; a failure
// with an empty message is still one) and its digest.
struct Outcome {
  uint64_t failed = 0, digest = 0;
};
// The digest of a rank that was asked for help (help_together) instead of running the command.
constexpr uint64_t kHelpDigest = 0x68656c7020686570;

// The allgather every first exchange makes: every rank's outcome, on every rank. Every call
// exchanges the same 16 bytes, with or without a digest or a check: a rank that joins another
// rank's first exchange (refused_together, help_together) matches it whichever that rank makes.
std::vector<Outcome> exchange(Comm& c, const Outcome& mine) {
  std::vector<Outcome> all(size_t(c.size()));
  c.allgather_bytes(&mine, sizeof mine, all.data());
  return all;
}

// After an exchange in which some rank failed: the messages to rank 0, which makes the line;
// every rank throws SameOnEveryRank (exits 1 without MPI_Abort; main() prints from rank 0 only).
[[noreturn]] void refuse(Comm& c, const std::vector<Outcome>& all, const std::string& msg) {
  const std::vector<uint8_t> got = c.gatherv_bytes(msg.data(), msg.size(), 0);
  std::string line;
  if (c.rank() == 0) {
    std::vector<std::string> msgs(all.size());
    std::vector<bool> fails(all.size());
    size_t at = 0;
    for (size_t r = 0; r < all.size(); ++r) {
      fails[r] = all[r].failed > 0;
      const size_t n = fails[r] ? size_t(all[r].failed - 1) : 0;
      msgs[r].assign(reinterpret_cast<const char*>(got.data()) + at, n);
      at += n;
    }
    line = verdict(msgs, fails);
  }
  throw SameOnEveryRank(line);
}

// The communicator of the first exchange that a rank which does not run command `name` (its
// command line refused, or help asked for) joins: under a launcher, for a command that decides
// together or a command line without a recognised command (whose ranks may run any); nullptr
// where there is none (one process, another command, a build without MPI).
Comm* joined_world(const std::string& name, const std::string& device) {
  if (!(name.empty() || decides_together(name)) || !launched_by_mpi()) return nullptr;
  try {
    return &world(device);
  } catch (const std::exception&) {  // a build without MPI started as several ranks
    return nullptr;
  }
}
}  // namespace

std::vector<uint64_t> checked_together(Comm& c, const std::function<uint64_t()>& digest,
                                       const std::function<void()>& checks) {
  if (c.size() == 1) {
    checks();
    return {digest ? digest() : 0};
  }
  Outcome mine;
  std::string msg;
  try {
    checks();
    if (digest) mine.digest = digest();
  } catch (const std::exception& e) {
    msg = error_line(e);  // as main() says it: an out-of-memory refusal names the size options
    mine.failed = msg.size() + 1;
  }
  const std::vector<Outcome> all = exchange(c, mine);
  std::vector<uint64_t> digests(all.size());
  bool any = false;
  for (size_t r = 0; r < all.size(); ++r) digests[r] = all[r].digest, any |= all[r].failed > 0;
  if (!any) return digests;
  refuse(c, all, msg);
}

void checked_together(Comm& c, const std::function<void()>& checks) {
  checked_together(c, nullptr, checks);
}

bool decides_together(const std::string& name) {
  // Each makes world() and calls checked_together before any other collective (cmd_train.cpp,
  // cmd_sample.cpp, cmd_eval.cpp, cmd_fid.cpp); mpi_early_errors refuses a bad option on rank 1
  // alone in each.
  for (const char* n : {"train", "demo", "sample", "eval", "fid-features"})
    if (name == n) return true;
  return false;
}

void refused_together(const std::string& name, const std::string& device,
                      const std::string& error) {
  Comm* c = joined_world(name, device);
  if (!c) throw Error(error);
  checked_together(*c, [&] { throw Error(error); });
  throw Error(error);  // not reached: checked_together threw
}

bool help_together(const std::string& name, const std::string& device, const std::string& asked) {
  Comm* c = joined_world(name, device);
  if (!c) return true;
  const std::string msg = cat(asked,
                              " given on some ranks only (help is printed when every rank asks "
                              "for it; give every rank the same command line)");
  Outcome mine;
  mine.failed = msg.size() + 1;
  mine.digest = kHelpDigest;
  const std::vector<Outcome> all = exchange(*c, mine);
  bool every = true;
  for (const Outcome& o : all) every &= o.failed > 0 && o.digest == kHelpDigest;
  if (every) return c->rank() == 0;
  refuse(*c, all, msg);
}

}  // namespace uvit::cli
