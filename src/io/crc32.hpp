// The CRC-32 of zip (and PNG, gzip; reflected polynomial 0xEDB88320), by carry-less multiplication
// where the CPU has it (docs/formats.md, "Writing .pth", CRC-32).
#pragma once
#include <cstddef>
#include <cstdint>

namespace uvit::zip {

// Which code computes the CRC: kAuto picks the fastest the CPU runs; kZlib is zlib's crc32_z, the
// fallback on any CPU; kPclmul folds 64 bytes a step with PCLMULQDQ (x86-64), kVpclmul 256 bytes
// with AVX-512 VPCLMULQDQ.
enum class Crc32Impl { kAuto, kZlib, kPclmul, kVpclmul };

// Whether this CPU (and build) runs `impl`; kAuto and kZlib always.
bool crc32_supported(Crc32Impl impl);
// What kAuto resolves to here: "vpclmulqdq", "pclmulqdq" or "zlib".
const char* crc32_impl_name();

// crc32(crc32(0, a), b) is the CRC of a followed by b, with every impl. An impl the CPU lacks is
// an Error.
uint32_t crc32(uint32_t crc, const void* p, size_t n, Crc32Impl impl = Crc32Impl::kAuto);

}  // namespace uvit::zip
