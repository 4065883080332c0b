#include "dist/weights_hash.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "uvit/backend.hpp"
#include "uvit/network.hpp"
#include "uvit/quant.hpp"

namespace uvit {

uint64_t hash_bytes(const void* p, size_t bytes, uint64_t h) {
  constexpr uint64_t kPrime = 1099511628211ull;
  const auto* c = static_cast<const unsigned char*>(p);
  const size_t full = bytes / 8;
  for (size_t i = 0; i < full; ++i) {
    uint64_t w;
    std::memcpy(&w, c + 8 * i, 8);
    h = (h ^ w) * kPrime;
  }
  if (bytes % 8) {
    uint64_t w = 0;
    std::memcpy(&w, c + 8 * full, bytes % 8);
    h = (h ^ w) * kPrime;
  }
  return h;
}

uint64_t hash_backend_floats(Backend& be, const float* p, size_t n, uint64_t h) {
  if (be.host_addressable()) return hash_bytes(p, n * 4, h);  // the CPU's buffer: no copy
  std::vector<float> buf(size_t(1) << 20);  // an even count: only the last piece pads a word
  for (size_t at = 0; at < n; at += buf.size()) {
    const size_t f = std::min(n - at, buf.size());
    be.download(buf.data(), p + at, f * 4);
    h = hash_bytes(buf.data(), f * 4, h);
  }
  return h;
}

uint64_t hash_network(Network& net, uint64_t h) {
  // The const params(): taking the mutable pointer would mark the act copy stale (a reconversion).
  const Network& cnet = net;
  const float* p = cnet.params();
  const QuantWeights* q = net.quantized();
  if (!q) return hash_backend_floats(net.backend(), p, net.num_params(), h);
  // A quantised load never writes its weights' fp32 slots (they hold whatever the buffer held,
  // other on every rank): the floats around them, then the integers and scales in their place.
  size_t at = 0;
  for (const QuantTensor& t : q->tensors) {  // sorted by offset
    h = hash_backend_floats(net.backend(), p + at, t.offset - at, h);
    at = t.offset + size_t(t.out) * size_t(t.in);
  }
  h = hash_backend_floats(net.backend(), p + at, net.num_params() - at, h);
  for (const QuantTensor& t : q->tensors) {
    h = hash_bytes(t.q.data(), t.q.size(), h);
    h = hash_bytes(t.scale.data(), t.scale.size() * 4, h);
  }
  return h;
}

}  // namespace uvit
