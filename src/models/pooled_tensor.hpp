// Activations in backend memory recycled through a per-model pool: what the convolutional
// autoencoders (the LDM KL autoencoder, the ST-VAE) share for their forward passes.
#pragma once
#include <algorithm>
#include <cstddef>
#include <mutex>
#include <tuple>
#include <utility>
#include <vector>

#include "uvit/backend.hpp"

namespace uvit {

// Activations of the decoder reach 64 MiB (256 channels at 256x256); fresh allocations of that
// size are mmap'd, page-faulted and zero-filled on every use on the CPU (a third of the decode
// time when measured), and cudaMalloc/cudaFree synchronise on the GPU. Forward passes therefore
// recycle their backend buffers through this pool, which the model keeps from one pass (one
// batch) to the next and frees with itself: the memory held between passes is one pass's peak.
struct BufferPool {
  Backend* be = nullptr;
  std::vector<std::pair<float*, size_t>> free, all;  // (buffer, capacity in floats)
  std::mutex mu;                                     // one pass at a time
  ~BufferPool() {
    for (auto& [p, n] : all) be->free_bytes(p);
  }
  std::pair<float*, size_t> take(size_t n) {
    size_t best = free.size();  // best fit: the smallest pooled buffer that holds n floats
    for (size_t i = 0; i < free.size(); ++i)
      if (free[i].second >= n && (best == free.size() || free[i].second < free[best].second))
        best = i;
    if (best < free.size()) {
      auto r = free[best];
      free.erase(free.begin() + long(best));
      return r;
    }
    // None fits: the free buffers smaller than n go back to the backend, as the passes grow
    // (the decoder's activations quadruple per level): kept, they would add up to more than the
    // pass's live activations (docs/memory.md, "The decode's peak").
    for (const auto& f : free) {
      be->free_bytes(f.first);
      all.erase(std::find(all.begin(), all.end(), f));
    }
    free.clear();
    all.push_back({be->alloc(n), n});
    return all.back();
  }
};
inline thread_local BufferPool* t_pool = nullptr;

// Installs a model's pool on this thread for one forward pass (restoring any outer one after it),
// so a pass's tensors always come from its own backend.
struct PoolScope {
  std::lock_guard<std::mutex> lock;
  BufferPool* outer = t_pool;
  explicit PoolScope(BufferPool& pool) : lock(pool.mu) { t_pool = &pool; }
  ~PoolScope() { t_pool = outer; }
};

// An activation [B, C, H, W] (or a clip [B, C, T, H, W], frames of a channel contiguous) in
// backend memory, borrowed from the pass's pool.
struct PooledTensor {
  int B = 0, C = 0, T = 1, H = 0, W = 0;
  float* d = nullptr;
  size_t cap = 0;
  PooledTensor() = default;
  PooledTensor(PooledTensor&& o) noexcept
      : B(o.B), C(o.C), T(o.T), H(o.H), W(o.W), d(o.d), cap(o.cap) {
    o.d = nullptr, o.cap = 0;
  }
  PooledTensor& operator=(PooledTensor&& o) noexcept {
    if (this != &o) {
      release();
      B = o.B, C = o.C, T = o.T, H = o.H, W = o.W, d = o.d, cap = o.cap;
      o.d = nullptr, o.cap = 0;
    }
    return *this;
  }
  ~PooledTensor() { release(); }
  void release() {
    if (d) t_pool->free.push_back({d, cap});
    d = nullptr, cap = 0;
  }
  void resize(int b, int c, int h, int w) { resize(b, c, 1, h, w); }
  void resize(int b, int c, int t, int h, int w) {
    B = b, C = c, T = t, H = h, W = w;
    if (size() > cap) {
      release();
      std::tie(d, cap) = t_pool->take(size());
    }
  }
  size_t size() const { return size_t(B) * C * T * H * W; }
  size_t plane() const { return size_t(H) * W; }
  size_t volume() const { return size_t(T) * H * W; }  // one channel of one item
};

}  // namespace uvit
