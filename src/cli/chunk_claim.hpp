// How several `uvit eval` share one work folder (two evals of one --out, or machines sharing the
// folder): each claims a chunk before it makes it, with flock on WORK/chunk_<i>.claim, so that no
// chunk is made twice; docs/evaluation.md "Two evals on one work folder". The kernel drops the
// lock of a process that ends however it ends (SIGKILL included), so no stale claim blocks.
#pragma once
#include <string>
#include <utility>

namespace uvit::cli {

// flock(LOCK_EX) on the file `path`, made if need be and opened for writing: on NFS flock becomes a
// byte-range lock, which a descriptor not open for writing (a folder's, all a folder gives) cannot
// take. Returns the descriptor holding the lock (closing it lets go); else -1 with errno:
// EWOULDBLOCK when another process holds it (wait false), or why the file could not be opened or
// locked (EROFS, EACCES: a folder this user cannot write; ENOLCK: a file system without locks).
// The run folder's lock (train_loop.cpp), eval's work folder and chunk claims take it so.
int lock_file(const std::string& path, bool wait);

class ChunkClaim {
 public:
  explicit ChunkClaim(std::string path) : path_(std::move(path)) {}
  ~ChunkClaim();
  ChunkClaim(const ChunkClaim&) = delete;
  ChunkClaim& operator=(const ChunkClaim&) = delete;

  // false when another process holds the claim now. A file system without flock (or a claim file
  // that cannot be made) goes unchecked: true, as train's run folder lock.
  bool try_take();
  // Waits until the holder lets go (its chunk saved, or the process gone).
  void take();
  // Who holds it, as its holder wrote it ("pid 123 on host"), or "another process".
  std::string holder() const;
  // The chunk is saved (or given up): the claim file is removed, then let go. Also at the end of
  // its life: a waiting process checks the file and the chunk again once it holds the claim.
  void done();

 private:
  bool lock(bool wait);
  std::string path_;
  int fd_ = -1;
};

// Holds the work folder (flock on WORK/.manifest.lock) while it lives: two evals starting
// together write and compare the manifest one after the other.
class WorkFolderHold {
 public:
  explicit WorkFolderHold(const std::string& dir);
  ~WorkFolderHold();
  WorkFolderHold(const WorkFolderHold&) = delete;
  WorkFolderHold& operator=(const WorkFolderHold&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace uvit::cli
