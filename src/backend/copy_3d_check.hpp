// The argument checks of Backend::copy_3d, shared by the CPU and CUDA versions (backend.hpp).
#pragma once
#include "uvit/error.hpp"

namespace uvit {

// Throws unless the shape is non-negative and the dst rows nest (no element written twice).
inline void check_copy_3d(long ld_dst, long bs_dst, long ld_src, long bs_src, long blocks,
                          long rows, long cols) {
  UVIT_CHECK(blocks >= 0 && rows >= 0 && cols >= 0, "copy_3d: ", blocks, " blocks of ", rows,
             " rows of ", cols, " elements");
  UVIT_CHECK(ld_dst >= 0 && bs_dst >= 0 && ld_src >= 0 && bs_src >= 0,
             "copy_3d: negative strides (dst ", ld_dst, ", ", bs_dst, "; src ", ld_src, ", ",
             bs_src, ")");
  if (blocks == 0 || rows == 0 || cols == 0) return;  // nothing written
  const bool rows_in_blocks =
      (rows <= 1 || ld_dst >= cols) && (blocks <= 1 || bs_dst >= (rows - 1) * ld_dst + cols);
  const bool blocks_in_rows =
      (blocks <= 1 || bs_dst >= cols) && (rows <= 1 || ld_dst >= (blocks - 1) * bs_dst + cols);
  UVIT_CHECK(rows_in_blocks || blocks_in_rows, "copy_3d: destination rows overlap (", blocks,
             " blocks ", bs_dst, " apart of ", rows, " rows ", ld_dst, " apart of ", cols,
             " elements)");
}

}  // namespace uvit
