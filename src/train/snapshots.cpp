#include "train/snapshots.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "train/save_commit.hpp"
#include "uvit/error.hpp"

namespace fs = std::filesystem;

namespace uvit {

namespace {
// A whole file, "" when it cannot be read (a snapshot without a log copy).
std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Whether `folder`'s log copy begins `log` (the run's); true without a copy. A save cut between its
// moves is judged by the copy it moves in (from .saving): the folder's once --resume finishes it.
bool begins(const std::string& log, const fs::path& folder) {
  std::error_code ec;
  const fs::path file = checkpoint_file(folder, kSnapshotLog);
  if (!fs::exists(file, ec)) return true;
  const std::string copy = read_all(file);
  return log_copy_is_live(log, &copy);
}
}  // namespace

bool snapshot_is_live(const fs::path& run, const fs::path& folder) {
  std::error_code ec;
  return fs::equivalent(run, folder, ec) || begins(read_all(run / "log.jsonl"), folder);
}

SnapshotBranches snapshot_branches(const fs::path& run) {
  const std::string log = read_all(run / "log.jsonl");
  SnapshotBranches out;
  for (auto& s : snapshot_folders(run)) (begins(log, s.second) ? out.live : out.stale).push_back(s);
  return out;
}

std::string read_run_log(const fs::path& run) {
  const std::string path = (run / "log.jsonl").string();
  const char* why =
      "--resume takes the run's history from it (its rows up to the checkpoint, the "
      "precision it trained in)";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    // A run's snapshots keep copies of its log: the run had one, and lost it. Without copies
    // nothing says it had one (a folder of checkpoint files and config.json put together by
    // hand): its log starts with this call, as before.
    const auto snaps = snapshot_folders(run);
    for (auto s = snaps.rbegin(); s != snaps.rend(); ++s) {
      std::error_code ec;
      const fs::path copy = checkpoint_file(s->second, kSnapshotLog);
      UVIT_CHECK(!fs::exists(copy, ec), path,
                 ": missing, though the run's snapshots keep copies of it (", copy.string(), "); ",
                 why, ": put it back (that copy holds its rows up to step ", s->first, ")");
    }
    return "";
  }
  std::string text;
  int err = fd < 0 ? errno : 0;
  for (char buf[65536]; !err;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0)
      text.append(buf, size_t(n));
    else if (n == 0)
      break;
    else if (errno != EINTR)
      err = errno;
  }
  if (fd >= 0) ::close(fd);
  UVIT_CHECK(!err, path, ": cannot read it (", std::strerror(err), "); ", why,
             ": give this user read access to it (its owner can)");
  return text;
}

std::string newest_snapshot_hint(const fs::path& run) {
  const auto live = snapshot_branches(run).live;
  const auto newest = std::find_if(live.rbegin(), live.rend(),
                                   [](const auto& s) { return checkpoint_resumes(s.second); });
  if (newest == live.rend()) return "";
  const std::string p = newest->second.string();
  return "its newest complete snapshot is " + p + ": --resume " + p;
}

}  // namespace uvit
