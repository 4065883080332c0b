#include "models/row_lists.hpp"

#include <cstdint>

#include "uvit/error.hpp"

namespace uvit::layers {

size_t RowLists::add(const std::vector<int32_t>& ids, long rows, bool distinct, const char* what) {
  UVIT_CHECK(rows >= 0 && rows <= long(INT32_MAX) + 1, what, ": ", rows,
             " rows do not fit int32 indices");
  std::vector<bool> seen(distinct ? size_t(rows) : 0, false);
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t r = ids[i];
    UVIT_CHECK(r >= 0 && r < rows, what, ": row ", r, " at ", i, " is outside [0, ", rows, ")");
    if (!distinct) continue;
    UVIT_CHECK(!seen[size_t(r)], what, ": row ", r,
               " appears twice (destination rows must differ)");
    seen[size_t(r)] = true;
  }
  const size_t handle = host_.size();
  host_.insert(host_.end(), ids.begin(), ids.end());
  return handle;
}

void RowLists::upload() {
  buf_.reserve(be_, host_.size() * sizeof(int32_t));
  be_.upload(buf_.as(), host_.data(), host_.size() * sizeof(int32_t));
}

}  // namespace uvit::layers
