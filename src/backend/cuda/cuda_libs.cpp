// cuBLAS, cuBLASLt and NVRTC, opened on first use (docs/gpu.md, "Libraries opened on first use").
// Linked, they cost every uvit process about 245 MB of resident memory and 0.1 s at start-up
// (cuBLASLt's relocations), CPU runs included. Each function the backend (and cudnn-frontend's
// SDPA) calls is defined here and forwards to the library's own, looked up once. The definitions
// repeat the headers' declarations, so a signature that differs does not compile; this file is
// compiled with hidden visibility, so a library loaded later never binds to them.
#include <cublasLt.h>
#include <cublas_api.h>
#include <cuda.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <nvrtc.h>

#include <filesystem>
#include <string>

#include "uvit/error.hpp"

namespace uvit {
namespace {

// The sonames of the toolkit the build compiled against (libcublas.so.13 for CUDA 13).
const std::string kCublas = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
const std::string kCublasLt = "libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR);
const std::string kNvrtc = "libnvrtc.so." + std::to_string(CUDA_VERSION / 1000);

// dlopen by soname (LD_LIBRARY_PATH, the binary's run path, ld.so.cache), else beside the CUDA
// runtime this process linked (the toolkit's lib folder, wherever the loader found it). dlopen of
// an open library returns its handle.
void* open_library(const std::string& soname) {
  if (void* h = ::dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL)) return h;
  const std::string why = ::dlerror();
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(&cudaGetDeviceCount), &info) && info.dli_fname) {
    const auto beside = std::filesystem::path(info.dli_fname).parent_path() / soname;
    if (void* h = ::dlopen(beside.c_str(), RTLD_NOW | RTLD_LOCAL)) return h;
  }
  fail("cuda: cannot open ", soname, " (", why,
       "); install the CUDA toolkit's libraries or name their folder in LD_LIBRARY_PATH");
}

template <typename F>
F* lookup(const std::string& soname, const char* name) {
  void* f = ::dlsym(open_library(soname), name);
  UVIT_CHECK(f, "cuda: ", soname, " has no ", name);
  return reinterpret_cast<F*>(f);
}

}  // namespace
}  // namespace uvit

// A forwarder is checked against the header only if the header declares that name (then a
// different signature is a "conflicting declaration" error); one the included headers do not
// declare (a typo, a function of another header) would define an unchecked symbol that callers
// bind to by name: an error too.
#pragma GCC diagnostic error "-Wmissing-declarations"

// One forwarder: RET NAME PARAMS { return real NAME ARGS; }, the real one looked up once.
#define UVIT_FORWARD(lib, ret, name, params, args)                       \
  extern "C" ret name params {                                           \
    static const auto real = uvit::lookup<ret params>(uvit::lib, #name); \
    return real args;                                                    \
  }

// cuBLAS (cublas_api.h; cublasCreate and friends are macros for the _v2 names).
UVIT_FORWARD(kCublas, cublasStatus_t, cublasCreate_v2, (cublasHandle_t * handle), (handle))
UVIT_FORWARD(kCublas, cublasStatus_t, cublasDestroy_v2, (cublasHandle_t handle), (handle))
UVIT_FORWARD(kCublas, cublasStatus_t, cublasSetStream_v2,
             (cublasHandle_t handle, cudaStream_t streamId), (handle, streamId))
UVIT_FORWARD(kCublas, cublasStatus_t, cublasSetWorkspace_v2,
             (cublasHandle_t handle, void* workspace, size_t workspaceSizeInBytes),
             (handle, workspace, workspaceSizeInBytes))
UVIT_FORWARD(kCublas, cublasStatus_t, cublasSetMathMode, (cublasHandle_t handle, cublasMath_t mode),
             (handle, mode))
UVIT_FORWARD(kCublas, const char*, cublasGetStatusString, (cublasStatus_t status), (status))
UVIT_FORWARD(kCublas, cublasStatus_t, cublasGemmEx,
             (cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m,
              int n, int k, const void* alpha, const void* A, cudaDataType Atype, int lda,
              const void* B, cudaDataType Btype, int ldb, const void* beta, void* C,
              cudaDataType Ctype, int ldc, cublasComputeType_t computeType, cublasGemmAlgo_t algo),
             (handle, transa, transb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta, C, Ctype,
              ldc, computeType, algo))
UVIT_FORWARD(kCublas, cublasStatus_t, cublasGemmBatchedEx,
             (cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m,
              int n, int k, const void* alpha, const void* const Aarray[], cudaDataType Atype,
              int lda, const void* const Barray[], cudaDataType Btype, int ldb, const void* beta,
              void* const Carray[], cudaDataType Ctype, int ldc, int batchCount,
              cublasComputeType_t computeType, cublasGemmAlgo_t algo),
             (handle, transa, transb, m, n, k, alpha, Aarray, Atype, lda, Barray, Btype, ldb, beta,
              Carray, Ctype, ldc, batchCount, computeType, algo))
UVIT_FORWARD(kCublas, cublasStatus_t, cublasGemmStridedBatchedEx,
             (cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m,
              int n, int k, const void* alpha, const void* A, cudaDataType Atype, int lda,
              long long int strideA, const void* B, cudaDataType Btype, int ldb,
              long long int strideB, const void* beta, void* C, cudaDataType Ctype, int ldc,
              long long int strideC, int batchCount, cublasComputeType_t computeType,
              cublasGemmAlgo_t algo),
             (handle, transa, transb, m, n, k, alpha, A, Atype, lda, strideA, B, Btype, ldb,
              strideB, beta, C, Ctype, ldc, strideC, batchCount, computeType, algo))

// cuBLASLt (cublasLt.h).
UVIT_FORWARD(kCublasLt, size_t, cublasLtGetVersion, (void), ())
UVIT_FORWARD(kCublasLt, cublasStatus_t, cublasLtCreate, (cublasLtHandle_t * lightHandle),
             (lightHandle))
UVIT_FORWARD(kCublasLt, cublasStatus_t, cublasLtDestroy, (cublasLtHandle_t lightHandle),
             (lightHandle))
UVIT_FORWARD(kCublasLt, cublasStatus_t, cublasLtMatmul,
             (cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t computeDesc, const void* alpha,
              const void* A, cublasLtMatrixLayout_t Adesc, const void* B,
              cublasLtMatrixLayout_t Bdesc, const void* beta, const void* C,
              cublasLtMatrixLayout_t Cdesc, void* D, cublasLtMatrixLayout_t Ddesc,
              const cublasLtMatmulAlgo_t* algo, void* workspace, size_t workspaceSizeInBytes,
              cudaStream_t stream),
             (lightHandle, computeDesc, alpha, A, Adesc, B, Bdesc, beta, C, Cdesc, D, Ddesc, algo,
              workspace, workspaceSizeInBytes, stream))
UVIT_FORWARD(kCublasLt, cublasStatus_t, cublasLtMatmulAlgoGetHeuristic,
             (cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t operationDesc,
              cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc,
              cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc,
              cublasLtMatmulPreference_t preference, int requestedAlgoCount,
              cublasLtMatmulHeuristicResult_t heuristicResultsArray[], int* returnAlgoCount),
             (lightHandle, operationDesc, Adesc, Bdesc, Cdesc, Ddesc, preference,
              requestedAlgoCount, heuristicResultsArray, returnAlgoCount))
UVIT_FORWARD(kCublasLt, cublasStatus_t, cublasLtMatmulDescCreate,
             (cublasLtMatmulDesc_t * matmulDesc, cublasComputeType_t computeType,
              cudaDataType_t scaleType),
             (matmulDesc, computeType, scaleType))
UVIT_FORWARD(kCublasLt, cublasStatus_t, cublasLtMatmulDescDestroy,
             (cublasLtMatmulDesc_t matmulDesc), (matmulDesc))
UVIT_FORWARD(kCublasLt, cublasStatus_t, cublasLtMatmulDescSetAttribute,
             (cublasLtMatmulDesc_t matmulDesc, cublasLtMatmulDescAttributes_t attr, const void* buf,
              size_t sizeInBytes),
             (matmulDesc, attr, buf, sizeInBytes))
UVIT_FORWARD(kCublasLt, cublasStatus_t, cublasLtMatmulPreferenceCreate,
             (cublasLtMatmulPreference_t * pref), (pref))
UVIT_FORWARD(kCublasLt, cublasStatus_t, cublasLtMatmulPreferenceDestroy,
             (cublasLtMatmulPreference_t pref), (pref))
UVIT_FORWARD(kCublasLt, cublasStatus_t, cublasLtMatmulPreferenceSetAttribute,
             (cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr,
              const void* buf, size_t sizeInBytes),
             (pref, attr, buf, sizeInBytes))
UVIT_FORWARD(kCublasLt, cublasStatus_t, cublasLtMatrixLayoutCreate,
             (cublasLtMatrixLayout_t * matLayout, cudaDataType type, uint64_t rows, uint64_t cols,
              int64_t ld),
             (matLayout, type, rows, cols, ld))
UVIT_FORWARD(kCublasLt, cublasStatus_t, cublasLtMatrixLayoutDestroy,
             (cublasLtMatrixLayout_t matLayout), (matLayout))
UVIT_FORWARD(kCublasLt, cublasStatus_t, cublasLtMatrixLayoutSetAttribute,
             (cublasLtMatrixLayout_t matLayout, cublasLtMatrixLayoutAttribute_t attr,
              const void* buf, size_t sizeInBytes),
             (matLayout, attr, buf, sizeInBytes))

// NVRTC (nvrtc.h), for cudnn-frontend's SDPA engine (UVIT_ATTENTION=cudnn).
UVIT_FORWARD(kNvrtc, nvrtcResult, nvrtcCreateProgram,
             (nvrtcProgram * prog, const char* src, const char* name, int numHeaders,
              const char* const* headers, const char* const* includeNames),
             (prog, src, name, numHeaders, headers, includeNames))
UVIT_FORWARD(kNvrtc, nvrtcResult, nvrtcDestroyProgram, (nvrtcProgram * prog), (prog))
UVIT_FORWARD(kNvrtc, nvrtcResult, nvrtcCompileProgram,
             (nvrtcProgram prog, int numOptions, const char* const* options),
             (prog, numOptions, options))
UVIT_FORWARD(kNvrtc, nvrtcResult, nvrtcGetPTXSize, (nvrtcProgram prog, size_t* ptxSizeRet),
             (prog, ptxSizeRet))
UVIT_FORWARD(kNvrtc, nvrtcResult, nvrtcGetPTX, (nvrtcProgram prog, char* ptx), (prog, ptx))
UVIT_FORWARD(kNvrtc, nvrtcResult, nvrtcGetCUBINSize, (nvrtcProgram prog, size_t* cubinSizeRet),
             (prog, cubinSizeRet))
UVIT_FORWARD(kNvrtc, nvrtcResult, nvrtcGetCUBIN, (nvrtcProgram prog, char* cubin), (prog, cubin))
UVIT_FORWARD(kNvrtc, nvrtcResult, nvrtcGetProgramLogSize, (nvrtcProgram prog, size_t* logSizeRet),
             (prog, logSizeRet))
UVIT_FORWARD(kNvrtc, nvrtcResult, nvrtcGetProgramLog, (nvrtcProgram prog, char* log), (prog, log))
