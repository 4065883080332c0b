// Moving parameters one tensor at a time between a backend buffer and the host, and reading a
// weights file's tensors into their places (Network, the frozen ViTs, CLIP: docs/memory.md).
#pragma once
#include <cstddef>
#include <vector>

#include "uvit/backend.hpp"
#include "uvit/io.hpp"
#include "uvit/params.hpp"

namespace uvit {

// On the CPU the buffer is host memory and every tensor is used in place; elsewhere one host
// buffer, grown to the largest tensor seen, carries each tensor across. So no operation here ever
// holds a host copy of the whole model (DiT-XL/2: 2.7 GB; LaVin-DiT 3B: 13.6 GB).
class ParamStage {
 public:
  ParamStage(Backend& be, float* params) : ParamStage(be, params, host_memory(be)) {}
  // in_place: params is host memory (a host copy the caller uploads itself, or the CPU's buffer).
  ParamStage(Backend& be, float* params, bool in_place)
      : be_(be), params_(params), host_(in_place) {}
  bool in_place() const { return host_; }
  // Whether be's buffers can be used in place by host code (the CPU backend's can).
  static bool host_memory(const Backend& be) { return be.host_addressable(); }
  // fill(p) writes n floats at p, which then become floats [offset, offset + n) of the buffer.
  template <class F>
  void write(size_t offset, size_t n, F&& fill) {
    float* p = host_ ? params_ + offset : buffer(n);
    fill(p);
    if (!host_) be_.upload(params_ + offset, p, n * sizeof(float));
  }
  template <class F>
  void write(const ParamEntry& e, F&& fill) {
    write(e.offset, e.numel, fill);
  }
  // Tensor e in host memory.
  const float* read(const ParamEntry& e) {
    if (host_) return params_ + e.offset;
    float* p = buffer(e.numel);
    be_.download(p, params_ + e.offset, e.numel * sizeof(float));
    return p;
  }
  float* buffer(size_t n) {
    if (tmp_.size() < n) tmp_.resize(n);
    return tmp_.data();
  }

 private:
  Backend& be_;
  float* params_;
  bool host_;
  std::vector<float> tmp_;
};

// Every tensor of r, whose directory the caller has checked against t (ParamTable::check), read
// from the file straight into its place: no copy of the whole model on the way.
inline void read_params(TensorReader& r, const ParamTable& t, ParamStage& stage) {
  for (size_t i = 0; i < r.tensors().size(); ++i)
    stage.write(t.at(r.tensors()[i].name), [&](float* p) { r.read_f32(i, p); });
}

}  // namespace uvit
