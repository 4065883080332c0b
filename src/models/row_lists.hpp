// Index lists for Backend::move_rows (MDT's masked pass, FiT's packed batches): built on the host,
// checked, and uploaded together into one grow-only backend buffer, so a mask or a packed batch
// costs one upload and the moves one call each, never a call per row.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "uvit/backend.hpp"

namespace uvit::layers {

class RowLists {
 public:
  explicit RowLists(Backend& be) : be_(be) {}
  // Starts a new set of lists (the pointers of the previous set stay valid until upload()).
  void clear() { host_.clear(); }
  // Appends a list whose entries must lie in [0, rows) and, for a destination list (`distinct`),
  // be distinct (move_rows writes rows in parallel); returns its handle. `what` names the list in
  // the error.
  size_t add(const std::vector<int32_t>& ids, long rows, bool distinct, const char* what);
  // Sends the lists to the backend (reallocating only when they outgrew the buffer).
  void upload();
  // Grows the buffer to n indices ahead of upload() (a plan: docs/memory.md).
  void reserve(size_t n) { buf_.reserve(be_, n * sizeof(int32_t)); }
  // The backend copy of list `handle` (valid after upload()).
  const int32_t* at(size_t handle) const { return buf_.as<int32_t>() + handle; }

 private:
  Backend& be_;
  std::vector<int32_t> host_;
  DeviceBuffer buf_;  // grow-only
};

}  // namespace uvit::layers
