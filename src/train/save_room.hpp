// A run on a full disk (docs/cli.md "Resume"): a save writes a whole checkpoint into RUN/.saving
// before it replaces the last one, so a disk that cannot hold a second copy fails the save and
// loses the steps since the last checkpoint. Said at the start, and when it happens; a log row
// that cannot be written stops the run in the same words.
#pragma once
#include <cstddef>
#include <filesystem>
#include <string>

namespace uvit {

// The warning the start of a run gives when RUN's disk has less room than its first save takes
// before it completes; "" when it has room or its free space cannot be read. That save writes one
// checkpoint of `checkpoint_bytes` into RUN/.saving before it replaces RUN's; where it is the
// snapshot save of step `snapshot_step` (0: the first save writes no snapshot), RUN's files land
// (growing by what they do not replace), then RUN/ckpts/STEP: a checkpoint and a copy of RUN's
// log. Older snapshots are pruned only after it, and later saves need no more than the first
// until train.keep_snapshots are held.
std::string save_room_warning(const std::filesystem::path& run, size_t checkpoint_bytes,
                              long snapshot_step);

// Where a run stopped by a failed write (a full disk) at step `reached` stands, and how to go on
// once there is room: "RUN still holds its checkpoint of step 8 (the steps since are lost)[; ROOM]:
// free space, then continue with uvit train --out RUN --resume", or, with no checkpoint yet, "...
// run the same command again". The steps are said lost only where `reached` is past the checkpoint
// (a row or grid after a save of that step loses none).
std::string run_stands(const std::filesystem::path& run, long reached, const std::string& room);

// The error of a save of the run's own checkpoint at `step` that failed with `what`: where the
// run stands (the checkpoint RUN still holds, the steps lost), the room a save needs when the
// disk lacks it, and how to go on.
std::string save_failure(const std::filesystem::path& run, long step, const std::string& what,
                         size_t checkpoint_bytes);

}  // namespace uvit
