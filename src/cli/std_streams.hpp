// The process's standard streams and thread count as the user's environment leaves them
// (docs/cli.md, "The environment").
#pragma once

namespace uvit::cli {

// Opens /dev/null on each of fds 0, 1 and 2 that is closed (`uvit train >&- 2>&-`): otherwise
// the first files the command opens get those numbers and its printed lines land in them (a
// run's log.jsonl took the progress lines of a closed stderr). Call first thing in main().
void open_closed_std_fds();

// `status`, or 1 with one line on stderr when what the command printed on stdout was lost (a full
// disk: `uvit info --json >/dev/full`), as `cat` and `echo` fail there.
int stdout_status(int status);

// Caps an OpenMP thread count beyond 4 per CPU this process may run on at the CPUs, with one
// warning naming `source` ("OMP_NUM_THREADS=100000", "--threads 64"): libgomp starts every thread
// asked for (OMP_NUM_THREADS=10000 made a 3 s sample take 64 s and 2.5 GB; 100000 crashed it).
// `n` <= 0: the count OpenMP was given by its environment.
void cap_threads(int n, const char* source);

}  // namespace uvit::cli
