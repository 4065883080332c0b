// CudaBackend::copy_3d (backend.hpp): the checks, the op timer, and copy_3d.cu's launch.
#include "backend/copy_3d_check.hpp"
#include "backend/cuda/cuda_backend.hpp"

namespace uvit {

void CudaBackend::copy_3d(float* dst, long ld_dst, long bs_dst, const float* src, long ld_src,
                          long bs_src, long blocks, long rows, long cols, bool act) {
  check_copy_3d(ld_dst, bs_dst, ld_src, bs_src, blocks, rows, cols);
  UVIT_OPTIME(optimes_, "copy_3d blocks=", blocks, " rows=", rows, " cols=", cols);
  cuda::copy_3d(act && bf16_, dst, ld_dst, bs_dst, src, ld_src, bs_src, size_t(blocks),
                size_t(rows), size_t(cols));
}

}  // namespace uvit
