// Backend selection and the default (unfused) compositions of the Backend interface.
#include "uvit/backend.hpp"

#include <algorithm>
#include <cstdlib>
#include <iostream>

#include "backend/attention_mode.hpp"
#include "uvit/error.hpp"

namespace uvit {

std::unique_ptr<Backend> make_cpu_bf16_backend();  // backend/cpu
// The test device (docs/gpu.md, "The simulated device"); not advertised to users.
std::unique_ptr<Backend> make_simdev_backend(const std::string& precision);  // backend/simdev

#ifdef UVIT_HAVE_CUDA
std::unique_ptr<Backend> make_cuda_backend(const std::string& precision);  // backend/cuda
int cuda_device_count();
#endif

void Conv2dShape::check() const {
  const Conv2dShape& s = *this;
  UVIT_CHECK(s.B > 0 && s.Cin > 0 && s.H > 0 && s.W > 0 && s.Cout > 0 && s.kh > 0 && s.kw > 0 &&
                 s.sh > 0 && s.sw > 0 && s.pt >= 0 && s.pl >= 0 && s.pb >= 0 && s.pr >= 0,
             "conv2d: invalid geometry B=", s.B, " Cin=", s.Cin, " H=", s.H, " W=", s.W,
             " Cout=", s.Cout, " k=", s.kh, "x", s.kw, " stride=", s.sh, "x", s.sw);
  UVIT_CHECK(s.H + s.pt + s.pb >= s.kh && s.W + s.pl + s.pr >= s.kw, "conv2d: kernel ", s.kh, "x",
             s.kw, " larger than the padded input ", s.H + s.pt + s.pb, "x", s.W + s.pl + s.pr);
  UVIT_CHECK((s.x_stride == 0 || s.x_stride >= long(s.Cin) * s.H * s.W) &&
                 (s.y_stride == 0 || s.y_stride >= long(s.Cout) * s.out_h() * s.out_w()),
             "conv2d: image strides ", s.x_stride, "/", s.y_stride, " smaller than one image");
}

bool cuda_available() {
#ifdef UVIT_HAVE_CUDA
  return cuda_device_count() > 0;
#else
  return false;
#endif
}

std::unique_ptr<Backend> make_cpu_backend_for(const std::string& precision) {
  UVIT_CHECK(precision != "tf32", "tf32 is a CUDA precision (the cpu offers fp32 and bf16)");
  if (precision != "bf16") return make_cpu_backend();
  if (cpu_has_bf16()) return make_cpu_bf16_backend();
  std::cerr << "note: this CPU has no bf16 units (AVX512-BF16 or AMX); computing in fp32\n";
  return make_cpu_backend();
}

namespace {
// `names` as a message says them, each between `quote`s: "a, b or c".
std::string or_list(const std::vector<std::string>& names, const std::string& quote) {
  std::string s;
  for (size_t i = 0; i < names.size(); ++i)
    s += (i == 0 ? "" : i + 1 < names.size() ? ", " : " or ") + (quote + names[i] + quote);
  return s;
}
}  // namespace

const std::vector<std::string>& device_names() {
  static const std::vector<std::string> names = {"cpu", "cuda"};
  return names;
}

bool known_device(const std::string& name) {
  const std::vector<std::string>& all = device_names();
  return std::find(all.begin(), all.end(), name) != all.end();
}

std::string device_choices(char quote) { return or_list(device_names(), std::string(1, quote)); }

const std::vector<std::string>& precision_names() {
  static const std::vector<std::string> names = {"fp32", "bf16", "tf32"};
  return names;
}

bool known_precision(const std::string& precision) {
  const std::vector<std::string>& all = precision_names();
  return std::find(all.begin(), all.end(), precision) != all.end();
}

std::string precision_choices(const std::string& quote) {
  return or_list(precision_names(), quote);
}

std::unique_ptr<Backend> make_backend(const std::string& name, const std::string& precision) {
  if (!precision.empty() && !known_precision(precision))
    fail("unknown precision '", precision, "' (expected ", precision_choices(), ")");
  // Only CUDA's attention reads it, but a typo is refused in every build (docs/gpu.md).
  (void)attention_mode();
  if (name == "cpu") {
    // UVIT_TEST_DEVICE=simdev: CPU runs go through the simulated device (tests only).
    if (const char* t = std::getenv("UVIT_TEST_DEVICE"); t && std::string(t) == "simdev")
      return make_simdev_backend(precision);
    return make_cpu_backend_for(precision);
  }
  if (name == "cuda") {
#ifdef UVIT_HAVE_CUDA
    return make_cuda_backend(precision.empty() ? "bf16" : precision);
#else
    fail("backend 'cuda' is not compiled into this build");
#endif
  }
  if (name == "simdev") return make_simdev_backend(precision);
  fail("unknown backend '", name, "' (expected ", device_choices('\''), ")");
}

std::string encoder_precision(const std::string& device, const std::string& requested) {
  if (requested.empty()) return device == "cuda" ? "tf32" : "fp32";
  UVIT_CHECK(requested == "fp32" || requested == "tf32",
             "the encoders compute in fp32 or tf32 (got '", requested, "')");
  return requested;
}

std::unique_ptr<Backend> make_encoder_backend(const std::string& device,
                                              const std::string& requested) {
  return make_backend(device, encoder_precision(device, requested));
}

void Backend::linear(const float* x, int ldx, const float* w, int ldw, const float* bias,
                     const float* residual, float* y, int ldy, int M, int N, int K) {
  float beta = 0.f;
  if (residual && residual != y) {
    if (ldy == N) {
      copy_act(y, residual, size_t(M) * N);
    } else {
      for (int m = 0; m < M; ++m)
        copy_act(act_at(y, size_t(m) * ldy), act_at(residual, size_t(m) * ldy), size_t(N));
    }
  }
  if (residual) beta = 1.f;
  gemm(false, true, M, N, K, 1.f, x, ldx, w, ldw, beta, y, ldy);
  if (!bias) return;
  if (ldy == N) {
    add_bias(y, bias, M, N);
  } else {
    for (int m = 0; m < M; ++m) add_bias(act_at(y, size_t(m) * ldy), bias, 1, N);
  }
}

}  // namespace uvit
