// torch.save archives: the zip reader, the restricted unpickler and the strided gathers.
// An input starting with byte 1 is a pickle wrapped into a fresh, valid archive, so mutations reach
// the unpickler instead of failing the zip CRC: 1, n, n x (key length, key, u16 storage bytes),
// then data.pkl (make_pth_seeds.py writes such seeds from torch.save files). Any other input is
// the archive itself.
#include <vector>

#include "fuzz_common.hpp"
#include "io/zip.hpp"
#include "uvit/io.hpp"

namespace {

// The archive of a wrapped input, or the input itself.
std::vector<uint8_t> archive(const uint8_t* data, size_t size) {
  if (size == 0 || data[0] != 1) return {data, data + size};
  size_t at = 1;
  auto byte = [&]() -> int { return at < size ? data[at++] : -1; };
  std::vector<std::pair<std::string, std::vector<uint8_t>>> entries;
  for (int n = byte(), k = 0; k < n; ++k) {
    const int len = byte();
    if (len < 0 || at + size_t(len) + 2 > size) return {};
    std::string key(reinterpret_cast<const char*>(data + at), size_t(len));
    at += size_t(len);
    const size_t bytes = data[at] | size_t(data[at + 1]) << 8;
    at += 2;
    std::vector<uint8_t> v(bytes);
    for (size_t i = 0; i < bytes; ++i) v[i] = uint8_t(i * 7 + 3);
    entries.emplace_back("archive/data/" + key, std::move(v));
  }
  std::vector<uint8_t> out;
  uvit::zip::Writer z([&](const void* p, size_t n) {
    out.insert(out.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
  });
  z.add("archive/data.pkl", {{data + at, size - at}});
  for (auto& [name, v] : entries) z.add(name, {{v.data(), v.size()}});
  z.finish();
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> a = archive(data, size);
  const std::string path = uvit::fuzz::as_file(a.data(), a.size(), "w.pth");
  uvit::fuzz::expect_clean([&] { uvit::load_weights(path); });
  uvit::fuzz::expect_clean([&] {
    auto r = uvit::open_weights(path);
    for (size_t i = 0; i < r->tensors().size(); ++i) {
      std::vector<float> out(size_t(r->tensors()[i].numel()));
      r->read_f32(i, out.data());
    }
  });
  return 0;
}
