// The checks a command makes before its work, decided by the ranks of an mpirun/srun job together
// (docs/distributed.md "Errors before the work"): a rank whose own options are bad is named, not
// silent, and an error every rank meets is said once.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "uvit/dist.hpp"

namespace uvit::cli {

// Runs `checks` (of the command line, the config, the files it names; or a check only some ranks
// make, such as eval's manifest on the lead) on every rank of `c`, then the ranks compare their
// outcome (one allgather of 16 bytes a rank; the messages only when one failed, which also makes it
// a barrier). When any failed, every rank throws SameOnEveryRank, so that main() prints one line
// from rank 0 and every rank exits 1 without MPI_Abort: the error alone when every rank met it (or
// rank 0 alone did), else "rank R: ERROR" ("ranks R, S: ...") for the lowest rank that failed,
// naming any rank that failed otherwise. With one rank an error propagates unchanged.
void checked_together(Comm& c, const std::function<void()>& checks);
// As above, and the same exchange carries each rank's `digest()` (taken once its checks passed: a
// hash of what they resolved, uvit train's settings): every rank's in rank order, on every rank.
std::vector<uint64_t> checked_together(Comm& c, const std::function<uint64_t()>& digest,
                                       const std::function<void()>& checks);

// Whether command `name` (a word of the command line: "train") makes the communicator first thing
// and decides its checks with checked_together before any other collective: train, demo, sample,
// eval, fid-features. Each rank of such a command runs that first exchange.
bool decides_together(const std::string& name);
// A command line this rank's CLI11 refused (`error`, one line) before command `name` ran, under a
// launcher: a rank of a command that decides_together, or of a command line whose command word
// was not recognised (`name` "": the other ranks' command is unknown, most likely the same
// mistake), joins the first exchange with the error (on `device`, the --device given: the
// communicator the other ranks make), so that a rank alone with a bad option is named in rank 0's
// line and none of the others waits for it. Throws SameOnEveryRank; an Error with `error` where
// there is no such exchange (one process, another command, a build without MPI): this rank's
// own, to print itself.
[[noreturn]] void refused_together(const std::string& name, const std::string& device,
                                   const std::string& error);
// Help (`asked`: "--help", "--version", "uvit help") asked for on a command line of command `name`
// under a launcher: as refused_together, this rank joins the first exchange, so that a rank alone
// with --help does not leave the others waiting for it. Returns whether this rank prints the help:
// rank 0 when every rank asked for it; every rank where there is no such exchange. Throws
// SameOnEveryRank (rank 0's line: "rank 1: --help given on some ranks only ...") when some ranks
// run the command instead.
bool help_together(const std::string& name, const std::string& device, const std::string& asked);

}  // namespace uvit::cli
