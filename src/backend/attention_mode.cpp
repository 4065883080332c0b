#include "backend/attention_mode.hpp"

#include <cstdlib>
#include <string>

#include "uvit/error.hpp"

namespace uvit {

AttentionMode attention_mode() {
  const char* e = std::getenv("UVIT_ATTENTION");
  const std::string v = e ? e : "";
  if (v.empty() || v == "auto") return AttentionMode::Auto;
  if (v == "flash") return AttentionMode::Flash;
  if (v == "wmma" || v == "fused") return AttentionMode::Fused;
  if (v == "unfused") return AttentionMode::Unfused;
  if (v == "cudnn") return AttentionMode::Cudnn;
  fail("UVIT_ATTENTION=", v,
       ": not an attention kernel (auto, flash, wmma or fused, unfused, cudnn; docs/gpu.md)");
}

}  // namespace uvit
