// The 64-bit hash of loaded weights that the ranks of a job compare (docs/distributed.md): the
// trainer's replica check every log_interval, and the check right after loading that every rank
// read the same files (sample, eval, fid-features, train --init / --resume).
#pragma once
#include <cstddef>
#include <cstdint>

namespace uvit {

class Backend;
class Network;

// FNV-1a over 64-bit words; `h` continues a hash (start: kWeightsHashSeed).
inline constexpr uint64_t kWeightsHashSeed = 1469598103934665603ull;
// Host bytes, as little-endian words (a last partial word padded with zero bytes).
uint64_t hash_bytes(const void* p, size_t bytes, uint64_t h);
// n floats of backend memory, read through a host buffer of 4 MB, not a copy of the whole: the
// same value as hash_bytes over the n floats.
uint64_t hash_backend_floats(Backend& be, const float* p, size_t n, uint64_t h);
// A network's parameters, and a quantised load's integers and scales (which its fp32 buffer does
// not hold: those slots, never written, are left out).
uint64_t hash_network(Network& net, uint64_t h = kWeightsHashSeed);

}  // namespace uvit
