// Which file each weights path named when a reader opened it (device, inode, size, modification
// time), so that a SHA-256 taken after the load (file_sha256) describes the bytes loaded or is
// refused: a training run saving RUN/nnet_ema.safetensors renames a new file over the path while
// another command loads it (docs/evaluation.md, "The weights' SHA-256").
#pragma once
#include <optional>
#include <string>

#include "io/file.hpp"

namespace uvit::io {

// Called by the weights readers (safetensors, .pth) when they open `path`; the last open counts.
void note_loaded(const std::string& path, const FileId& id);
// What `path` named when a reader last opened it in this process, or nothing.
std::optional<FileId> loaded_as(const std::string& path);

// Test hook between a weights file's read and a later use of it: when the environment variable
// `var` names a FILE, the first call for `var` creates FILE and waits (at most 120 s) until it is
// removed, so that an e2e test can replace the file there (tests/e2e/save_commit.sh).
void pause_for_test(const char* var);

}  // namespace uvit::io
