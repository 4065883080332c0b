// The process's standard streams as the user's environment leaves them (docs/cli.md, "The
// environment").
#pragma once

namespace uvit::cli {

// Opens /dev/null on each of fds 0, 1 and 2 that is closed (`uvit train >&- 2>&-`): otherwise
// the first files the command opens get those numbers and its printed lines land in them (a
// run's log.jsonl took the progress lines of a closed stderr). Call first thing in main().
void open_closed_std_fds();

// `status`, or 1 with one line on stderr when what the command printed on stdout was lost (a full
// disk: `uvit info --json >/dev/full`), as `cat` and `echo` fail there.
int stdout_status(int status);

}  // namespace uvit::cli
