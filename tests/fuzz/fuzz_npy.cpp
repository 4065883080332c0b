// .npy (header dict parser, sizes; peek_npy_header's partial read of a long header) and .npz (the
// zip reader plus .npy members).
#include "fuzz_common.hpp"
#include "io/npy.hpp"
#include "uvit/io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The first byte picks the reader so one corpus serves both.
  if (size == 0) return 0;
  const bool npz = data[0] & 1;
  const std::string path = uvit::fuzz::as_file(data + 1, size - 1, npz ? "a.npz" : "a.npy");
  if (npz) {
    uvit::fuzz::expect_clean([&] { uvit::npz_names(path); });
    uvit::fuzz::expect_clean([&] { uvit::load_npz(path); });
  } else {
    uvit::fuzz::expect_clean([&] { uvit::peek_npy_header(path); });
    uvit::fuzz::expect_clean([&] { uvit::read_npy_header(path); });
    uvit::fuzz::expect_clean([&] { uvit::load_npy(path); });
  }
  return 0;
}
