// The checks a command makes before its work, decided by the ranks of an mpirun/srun job together
// (docs/distributed.md "Errors before the work"): a rank whose own options are bad is named, not
// silent, and an error every rank meets is said once.
#pragma once
#include <functional>

#include "uvit/dist.hpp"

namespace uvit::cli {

// Runs `checks` (of the command line, the config, the files it names; or a check only some ranks
// make, such as eval's manifest on the lead) on every rank of `c`, then the ranks compare their
// outcome (one allgather of a byte; the messages only when one failed, which also makes it a
// barrier). When any failed, every rank throws SameOnEveryRank, so that main() prints one line from
// rank 0 and every rank exits 1 without MPI_Abort: the error alone when every rank met it (or rank
// 0 alone did), else "rank R: ERROR" ("ranks R, S: ...") for the lowest rank that failed, naming
// any rank that failed otherwise. With one rank an error propagates unchanged.
void checked_together(Comm& c, const std::function<void()>& checks);

}  // namespace uvit::cli
