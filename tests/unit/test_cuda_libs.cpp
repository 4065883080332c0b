// cuBLAS, cuBLASLt and NVRTC opened on first use (src/backend/cuda/cuda_libs.cpp): the calls that
// need no GPU go through the forwarders here; the rest run in the GPU tests (test_cuda_gemm.cpp).
#include <cublasLt.h>
#include <cublas_v2.h>
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <nvrtc.h>

#include <string>

#include "uvit/backend.hpp"

namespace {

TEST(CudaLibs, CublasLtDescriptorsWithoutADevice) {
  EXPECT_EQ(cublasLtGetVersion() / 10000, size_t(CUBLAS_VER_MAJOR));
  cublasLtMatrixLayout_t layout = nullptr;
  ASSERT_EQ(cublasLtMatrixLayoutCreate(&layout, CUDA_R_16BF, 72, 258, 72), CUBLAS_STATUS_SUCCESS);
  const int32_t batch = 3;
  EXPECT_EQ(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch,
                                             sizeof batch),
            CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cublasLtMatrixLayoutDestroy(layout), CUBLAS_STATUS_SUCCESS);
  cublasLtMatmulDesc_t desc = nullptr;
  ASSERT_EQ(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), CUBLAS_STATUS_SUCCESS);
  const cublasOperation_t t = CUBLAS_OP_T;
  EXPECT_EQ(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t),
            CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cublasLtMatmulDescDestroy(desc), CUBLAS_STATUS_SUCCESS);
  cublasLtMatmulPreference_t pref = nullptr;
  ASSERT_EQ(cublasLtMatmulPreferenceCreate(&pref), CUBLAS_STATUS_SUCCESS);
  const size_t workspace = 1 << 20;
  EXPECT_EQ(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                 &workspace, sizeof workspace),
            CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cublasLtMatmulPreferenceDestroy(pref), CUBLAS_STATUS_SUCCESS);
}

TEST(CudaLibs, CublasStatusStringsWithoutADevice) {
  EXPECT_STREQ(cublasGetStatusString(CUBLAS_STATUS_SUCCESS), "success");
  EXPECT_STREQ(cublasGetStatusString(CUBLAS_STATUS_NOT_SUPPORTED),
               "the requested functionality is not supported");
}

// Handles need a device: without one, both libraries answer with a status (the forwarders reach
// them); with one, the GPU tests use them.
TEST(CudaLibs, HandlesWithoutADeviceFailCleanly) {
  if (uvit::cuda_available()) GTEST_SKIP() << "a device: test_cuda_gemm.cpp uses the handles";
  cublasHandle_t h = nullptr;
  EXPECT_EQ(cublasCreate(&h), CUBLAS_STATUS_NOT_INITIALIZED);
  cublasLtHandle_t lt = nullptr;
  EXPECT_EQ(cublasLtCreate(&lt), CUBLAS_STATUS_NOT_INITIALIZED);
}

// The library each call opened is the toolkit's (by its soname), loaded once.
TEST(CudaLibs, OpenedBySoname) {
  cublasLtGetVersion();
  cublasGetStatusString(CUBLAS_STATUS_SUCCESS);
  for (const std::string so : {"libcublasLt.so.", "libcublas.so."}) {
    void* h = dlopen((so + std::to_string(CUBLAS_VER_MAJOR)).c_str(), RTLD_NOW | RTLD_NOLOAD);
    EXPECT_NE(h, nullptr) << so;
    if (h) dlclose(h);
  }
}

// NVRTC compiles on the host: PTX for a virtual architecture, a cubin for a real one, and the log
// of a program that does not compile.
TEST(CudaLibs, NvrtcCompilesWithoutADevice) {
  const char* src = "extern \"C\" __global__ void fill(float* x) { x[threadIdx.x] = 2.f; }";
  for (const char* arch : {"--gpu-architecture=compute_80", "--gpu-architecture=sm_90"}) {
    nvrtcProgram p = nullptr;
    ASSERT_EQ(nvrtcCreateProgram(&p, src, "fill.cu", 0, nullptr, nullptr), NVRTC_SUCCESS);
    ASSERT_EQ(nvrtcCompileProgram(p, 1, &arch), NVRTC_SUCCESS) << arch;
    size_t n = 0;
    if (std::string(arch).find("compute_") != std::string::npos) {
      ASSERT_EQ(nvrtcGetPTXSize(p, &n), NVRTC_SUCCESS);
      std::string ptx(n, '\0');
      ASSERT_EQ(nvrtcGetPTX(p, ptx.data()), NVRTC_SUCCESS);
      EXPECT_NE(ptx.find(".entry fill"), std::string::npos);
    } else {
      ASSERT_EQ(nvrtcGetCUBINSize(p, &n), NVRTC_SUCCESS);
      std::string cubin(n, '\0');
      ASSERT_EQ(nvrtcGetCUBIN(p, cubin.data()), NVRTC_SUCCESS);
      EXPECT_EQ(cubin.substr(0, 4),
                "\x7f"
                "ELF");
    }
    ASSERT_EQ(nvrtcDestroyProgram(&p), NVRTC_SUCCESS);
  }
  nvrtcProgram bad = nullptr;
  ASSERT_EQ(nvrtcCreateProgram(&bad, "__global__ void f() { undeclared(); }", "bad.cu", 0, nullptr,
                               nullptr),
            NVRTC_SUCCESS);
  const char* arch = "--gpu-architecture=compute_80";
  EXPECT_EQ(nvrtcCompileProgram(bad, 1, &arch), NVRTC_ERROR_COMPILATION);
  size_t n = 0;
  ASSERT_EQ(nvrtcGetProgramLogSize(bad, &n), NVRTC_SUCCESS);
  std::string log(n, '\0');
  ASSERT_EQ(nvrtcGetProgramLog(bad, log.data()), NVRTC_SUCCESS);
  EXPECT_NE(log.find("undeclared"), std::string::npos) << log;
  nvrtcDestroyProgram(&bad);
}

}  // namespace
