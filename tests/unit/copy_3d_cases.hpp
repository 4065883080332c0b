// The shapes both tests of Backend::copy_3d run (test_copy_3d.cpp on the CPU against a loop of
// copy_act_2d calls, test_cuda_copy_3d.cpp on the GPU against the CPU): the layouts the models
// use, with odd row lengths and element offsets that take the CUDA kernel's 16-, 4- and 2-byte
// paths.
#pragma once
#include <vector>

namespace uvit::test {

struct Copy3dCase {
  const char* name;
  long ld_dst, bs_dst, ld_src, bs_src, blocks, rows, cols;
  long dst_off, src_off;  // elements before the first one copied
  // Elements a buffer needs for its strides (the last element copied, plus one).
  static long extent(long off, long ld, long bs, long blocks, long rows, long cols) {
    return off + (blocks - 1) * bs + (rows - 1) * ld + cols;
  }
  long dst_size() const { return extent(dst_off, ld_dst, bs_dst, blocks, rows, cols); }
  long src_size() const { return extent(src_off, ld_src, bs_src, blocks, rows, cols); }
};

inline const std::vector<Copy3dCase>& copy_3d_cases() {
  static const std::vector<Copy3dCase> c = {
      // LaVin's joint sequence [B, N = 9, 3D = 24], a stream of L = 5 rows at row 2 of each sample
      {"stream into joint", 24, 9 * 24, 8, 5 * 8, 3, 5, 8, 2 * 24, 0},
      {"joint into stream", 8, 5 * 8, 24, 9 * 24, 3, 5, 8, 0, 2 * 24},
      {"head slice, odd", 24, 9 * 24, 6, 5 * 6, 3, 5, 3, 2 * 24 + 11, 1},
      // a class token broadcast to every sample (src strides 0)
      {"broadcast row", 7, 5 * 7, 0, 0, 4, 1, 7, 0, 3},
      {"broadcast block", 6, 4 * 6, 6, 0, 3, 2, 6, 6, 0},
      // ST-VAE's frames: blocks (frames) inside rows (channels of T = 5 frames)
      {"blocks inside rows", 5 * 10, 10, 10, 3 * 10, 4, 3, 10, 10, 0},
      {"one block", 33, 0, 17, 0, 1, 9, 17, 1, 2},
      {"aligned, large", 1152, 300 * 1152, 1152, 256 * 1152, 16, 256, 1152, 44 * 1152, 0},
  };
  return c;
}

}  // namespace uvit::test
