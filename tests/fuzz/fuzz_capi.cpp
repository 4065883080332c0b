// The C API's request handling (include/uvit.h) over a tiny random-weights class model: each
// input is a uvit_gen_params as a caller's raw bytes (struct_size, every number, the `has` bits
// and the sampler options as they come), followed by the strings and class ids its pointers
// point at; then the same tail through uvit_class_from_name / uvit_class_name,
// uvit_model_info_get and uvit_png_read_parameters. A status with a message is fine; a crash,
// a sanitizer report, an exception or an OK status with a bad image is a finding. The driver
// bounds only what is the caller's cost by contract (n <= 4 images, <= 4 steps, Skip-Cache) and
// keeps struct_size within the bytes it owns.
#include <algorithm>
#include <vector>

#include "fuzz_common.hpp"
#include "fuzz_model.hpp"
#include "uvit.h"

namespace {

uvit_ctx* g_ctx = nullptr;

int g_stop_after = 0;
bool progress(int done, int, void*) { return g_stop_after == 0 || done < g_stop_after; }

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const uvit::fuzz::TinyModel m = uvit::fuzz::tiny_model("fuzz_capi");
  uvit_ctx_params cp;
  uvit_ctx_params_init(&cp);
  cp.config = m.config.c_str();
  cp.weights = m.weights.c_str();
  if (uvit_ctx_create(&cp, &g_ctx) != UVIT_OK) {
    std::fprintf(stderr, "fuzz_capi: %s\n", uvit_last_error());
    std::abort();
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The caller's struct: our layout plus 32 bytes a newer header might add.
  constexpr size_t kBytes = sizeof(uvit_gen_params) + 32;
  if (size < kBytes) return 0;
  alignas(uvit_gen_params) unsigned char raw[kBytes];
  std::memcpy(raw, data, kBytes);
  auto* p = reinterpret_cast<uvit_gen_params*>(raw);
  const std::string tail(reinterpret_cast<const char*>(data + kBytes), size - kBytes);
  // The tail: class ids (the first 8 ints), then NUL-separated strings: sampler, negative
  // prompt, prompts.
  int classes[8] = {};
  std::memcpy(classes, tail.data(), std::min(tail.size(), sizeof classes));
  std::vector<std::string> strs;
  for (size_t at = std::min(tail.size(), sizeof classes); at <= tail.size();) {
    const size_t end = std::min(tail.find('\0', at), tail.size());
    strs.push_back(tail.substr(at, end - at));
    at = end + 1;
  }
  while (strs.size() < 3) strs.emplace_back();
  std::vector<const char*> prompts;
  for (size_t i = 2; i < strs.size(); ++i) prompts.push_back(strs[i].c_str());

  p->struct_size = std::min<size_t>(p->struct_size, kBytes);
  p->n = std::max(-1, std::min(p->n, 4));
  p->steps = std::max(-1, std::min(p->steps, 4));
  p->batch = std::max(-1, std::min(p->batch, 4));
  p->skip_cache = std::max(-1, std::min(p->skip_cache, 4));
  p->classes = p->n_classes == 0 ? nullptr : classes;
  p->n_classes = std::max(-1, std::min(p->n_classes, 8));
  p->prompts = p->n_prompts == 0 ? nullptr : prompts.data();
  p->n_prompts = std::max(-1, std::min(p->n_prompts, int(prompts.size())));
  p->sampler = strs[0].empty() ? nullptr : strs[0].c_str();
  p->negative_prompt = strs[1].empty() ? nullptr : strs[1].c_str();
  g_stop_after = int(raw[sizeof(size_t)] % 4);
  p->progress = raw[sizeof(size_t) + 1] & 1 ? progress : nullptr;
  p->progress_user = nullptr;

  uvit_image* im = nullptr;
  int n = 0;
  const uvit_status st = uvit_generate(g_ctx, p, &im, &n);
  if (st == UVIT_OK) {
    if (n < 1 || !im) std::abort();
    for (int i = 0; i < n; ++i)
      if (im[i].width != 28 || im[i].height != 28 || im[i].channels != 1 || !im[i].png ||
          !im[i].parameters || !im[i].record)
        std::abort();
  } else if (im || n || !*uvit_last_error()) {
    std::abort();  // a failure leaves no images and says why
  }
  uvit_images_free(im, n);

  uvit_class_from_name(g_ctx, tail.c_str());
  uvit_class_name(g_ctx, classes[0]);
  uvit_model_info info;
  std::memset(&info, 0, sizeof info);
  info.struct_size = std::min<size_t>(classes[1] & 0xff, sizeof info);
  uvit_model_info_get(g_ctx, &info);
  char *params = nullptr, *record = nullptr;
  if (uvit_png_read_parameters(reinterpret_cast<const uint8_t*>(tail.data()), tail.size(), &params,
                               &record) == UVIT_OK &&
      (!params || !record))
    std::abort();
  uvit_free(params);
  uvit_free(record);
  return 0;
}
