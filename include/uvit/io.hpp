// File formats: safetensors, PyTorch .pth (zip + restricted unpickler), .npy / .npz.
// Every reader validates what it reads and throws uvit::Error with a one-line message naming the
// file.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "uvit/array.hpp"

namespace uvit {

// safetensors: F32, F16, BF16 (plus F64/I64/I32/U8/... for non-weight tensors).
NamedArrays load_safetensors(const std::string& path,
                             std::map<std::string, std::string>* metadata = nullptr);
// Only the header's "__metadata__" (cheap for any file size).
std::map<std::string, std::string> read_safetensors_metadata(const std::string& path);

// torch.save zip archives holding a state_dict (OrderedDict/dict of tensors), or a checkpoint dict
// whose "state_dict", "ema" or "model" entry (first match, in that order) holds it, e.g. DiT's
// {"model", "ema", "opt", "args"}; float32/float16/bfloat16/float64/int64 storages with strides and
// offsets. Never executes anything: only an allow-list of globals is understood, and only the
// chosen tensors are read.
NamedArrays load_pth(const std::string& path);

// Chooses by extension (.safetensors, .pth/.pt/.bin/.ckpt) and verifies the magic bytes. A
// "module." prefix on every name (a DDP-wrapped model's state_dict) is removed.
NamedArrays load_weights(const std::string& path);

// A weights file's tensor directory, read one tensor at a time straight into the caller's memory
// (Network::load_file reads into the parameter buffer: no whole-model copy on the way).
struct TensorInfo {
  std::string name;  // after the DDP "module." prefix is removed
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  int64_t numel() const;
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }
};
class TensorReader {
 public:
  virtual ~TensorReader() = default;
  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Tensor i's row-major bytes (nbytes()) into dst. Each tensor may be read once.
  virtual void read(size_t i, void* dst) = 0;
  // Tensor i as fp32 into dst (numel floats): 2-byte dtypes are read into the upper half of dst
  // and widened in place, so no temporary of the tensor's size exists.
  void read_f32(size_t i, float* dst);
  // Bytes [offset, offset + n) of tensor i's row-major bytes into dst (safetensors: a positional
  // read; ZeRO-1's resume reads each rank's shard of the optimizer state). Any number of times.
  virtual void read_part(size_t i, uint64_t offset, size_t n, void* dst);

 protected:
  std::string path_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};
// As load_weights chooses and checks the file, with the same names.
std::unique_ptr<TensorReader> open_weights(const std::string& path);
// Refuses a weights path that names nothing or a folder (a training run's: "give
// RUN/nnet_ema.safetensors"), the message prefixed by `what` (e.g. "train.init_weights (--init) ").
void check_weights_path(const std::string& path, const std::string& what = "");

// Written atomically (temporary file, fsync, rename).
void save_safetensors(const std::string& path, const NamedArrays& tensors,
                      const std::map<std::string, std::string>& metadata = {});
// The same file streamed: write(i, sink) hands tensor i's row-major bytes to sink in order, in
// pieces of any size, so no copy of the whole model need exist (Network::save_weights, the
// trainer's state). A tensor that does not add up to its shape's bytes is an error.
using ByteSink = std::function<void(const void* data, size_t n)>;
void save_safetensors(const std::string& path, const std::vector<TensorInfo>& tensors,
                      const std::function<void(size_t i, const ByteSink& sink)>& write,
                      const std::map<std::string, std::string>& metadata = {});

Array load_npy(const std::string& path);
// An .npy file's header only: its dtype and shape, checked (with the file's size) as load_npy
// checks them, so a file that passes would load unless it changes; reads no data.
struct NpyInfo {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t data_offset = 0;  // where the array's bytes start
};
NpyInfo read_npy_header(const std::string& path);
void save_npy(const std::string& path, const Array& a);  // atomic
// .npz: a zip of .npy members (stored or deflated).
NamedArrays load_npz(const std::string& path);
// Only the members named in `names` that the file has (others, e.g. a reference batch's
// gigabytes of images, are not read), in file order.
NamedArrays load_npz(const std::string& path, const std::vector<std::string>& names);
// The array names of an .npz (its zip directory only).
std::vector<std::string> npz_names(const std::string& path);
void save_npz(const std::string& path, const NamedArrays& arrays);  // stored, atomic

// Atomic whole-file write: path.tmp.PID, fsync, rename.
void write_file_atomic(const std::string& path, const void* data, size_t n);
std::vector<uint8_t> read_file(const std::string& path);
// A whole JSON file; errors "PATH: file not found" / "PATH: invalid JSON (...)".
nlohmann::json read_json_file(const std::string& path);

}  // namespace uvit
