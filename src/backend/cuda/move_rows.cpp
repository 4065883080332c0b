// CudaBackend::move_rows (backend.hpp): the checks, the op timer, and move_rows.cu's launch.
#include "backend/cuda/cuda_backend.hpp"
#include "uvit/error.hpp"

namespace uvit {

void CudaBackend::move_rows(float* dst, const int32_t* dst_idx, const float* src,
                            const int32_t* src_idx, long n, long row_len, bool accumulate,
                            bool act) {
  UVIT_CHECK(n >= 0 && row_len >= 0, "move_rows: ", n, " rows of ", row_len, " elements");
  UVIT_CHECK(src || !accumulate, "move_rows: accumulating needs a source");
  UVIT_OPTIME(optimes_, "move_rows n=", n, " len=", row_len, accumulate ? " +=" : "");
  cuda::move_rows(act && bf16_, dst, dst_idx, src, src_idx, size_t(n), size_t(row_len), accumulate);
}

}  // namespace uvit
