// open_weights / load_weights: the format by extension, the DDP prefix, and fp32 reads in place.
#include <cstring>
#include <filesystem>
#include <vector>

#include "io/file.hpp"
#include "io/readers.hpp"
#include "io/weights_views.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace uvit {

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void TensorReader::read_f32(size_t i, float* dst) {
  const TensorInfo& t = tensors_.at(i);
  const size_t n = size_t(t.numel());
  if (t.dtype == DType::F32) return read(i, dst);
  if (t.dtype == DType::F16 || t.dtype == DType::BF16) {
    // Raw halves in the upper half of dst, widened front to back: writing float k (bytes
    // [4k, 4k + 4)) never reaches a half not yet read (half j >= k + 1 sits at 2n + 2j).
    auto* raw = reinterpret_cast<uint16_t*>(dst) + n;
    read(i, raw);
    const bool half = t.dtype == DType::F16;
    for (size_t k = 0; k < n; ++k) {
      const uint16_t h = raw[k];
      dst[k] = half ? half_to_float(h) : bf16_to_float(h);
    }
    return;
  }
  // F64 and integer tensors (rare in weights): one temporary
  Array a = Array::uninitialised(t.dtype, t.shape);
  read(i, a.data.data());
  const std::vector<float> v = a.to_f32();
  std::memcpy(dst, v.data(), n * sizeof(float));
}

void TensorReader::read_part(size_t i, uint64_t, size_t, void*) {
  fail(path_, ": tensor '", tensors_.at(i).name,
       "' cannot be read in parts from this format (safetensors can)");
}

NamedArrays read_all(TensorReader& r) {
  NamedArrays out;
  out.reserve(r.tensors().size());
  for (size_t i = 0; i < r.tensors().size(); ++i) {
    const TensorInfo& t = r.tensors()[i];
    // Read straight into the array, not zero-filled first: a failed read throws and drops it.
    Array a = Array::uninitialised(t.dtype, t.shape);
    r.read(i, a.data.data());
    out.emplace_back(t.name, std::move(a));
  }
  return out;
}

namespace {

// torch.save(ddp_model.state_dict()) names every tensor "module.<name>"; the prefix goes when all
// names have it (a single name without it means the prefix is part of the real names).
std::unique_ptr<TensorReader> without_ddp_prefix(std::unique_ptr<TensorReader> r) {
  const std::string p = "module.";
  bool all = !r->tensors().empty();
  for (const TensorInfo& t : r->tensors()) all = all && t.name.compare(0, p.size(), p) == 0;
  return std::make_unique<RenamedReader>(
      std::move(r), all ? with_prefix(p, true) : [](const std::string& n) { return n; });
}

}  // namespace

std::unique_ptr<TensorReader> open_weights(const std::string& path) {
  if (path.ends_with(".safetensors")) {
    try {
      return without_ddp_prefix(open_safetensors_reader(path));
    } catch (const Error&) {  // the magic is read only then: a good file is opened once
      io::InFile f(path);
      uint8_t m[4] = {0, 0, 0, 0};
      if (f.size() >= 4) f.read(0, m, 4, "magic");
      if (std::memcmp(m, "PK\x03\x04", 4) == 0)
        fail(path, ": this is a zip (torch.save) archive, not safetensors; rename it to .pth");
      throw;
    }
  }
  if (path.ends_with(".pth") || path.ends_with(".pt") || path.ends_with(".bin") ||
      path.ends_with(".ckpt"))
    return without_ddp_prefix(open_pth_reader(path));
  // What a user meant matters more than the extension: a missing file, or a training run's folder.
  check_weights_path(path);
  fail(path, ": unknown weights format (expected .safetensors, .pth, .pt, .bin or .ckpt)");
}

void check_weights_path(const std::string& path, const std::string& what) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    fail(what, path, ": is a folder, not a weights file",
         std::filesystem::exists(path + "/nnet_ema.safetensors", ec)
             ? " (a training run: give " + path + "/nnet_ema.safetensors)"
             : "");
  if (!std::filesystem::exists(path, ec)) fail(what, path, ": no such file");
}

NamedArrays load_weights(const std::string& path) { return read_all(*open_weights(path)); }

}  // namespace uvit
