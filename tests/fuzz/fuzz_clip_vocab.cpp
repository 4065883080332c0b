// The CLIP tokenizer's loaders (HF vocab.json + merges.txt, gzip or plain) and BPE over arbitrary
// prompt bytes. Input: vocab.json \0 merges.txt \0 prompt (missing parts are empty); an empty
// vocab.json tokenizes the prompt with the real CLIP vocabulary (data/clip).
#include <sys/stat.h>

#include <string_view>

#include "fuzz_common.hpp"
#include "uvit/clip.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size), part[3];
  for (int k = 0; k < 3; ++k) {
    const size_t z = k < 2 ? in.find('\0') : std::string_view::npos;
    part[k] = in.substr(0, z);
    in = z == std::string_view::npos ? std::string_view() : in.substr(z + 1);
  }
  auto bytes = [](std::string_view s) { return reinterpret_cast<const uint8_t*>(s.data()); };
  const std::string vocab = uvit::fuzz::as_file(bytes(part[0]), part[0].size(), "vocab.json");
  const std::string merges = uvit::fuzz::as_file(bytes(part[1]), part[1].size(), "merges.txt");
  const std::string prompt(part[2]);
  if (part[0].empty()) {
    static const uvit::ClipTokenizer real = uvit::ClipTokenizer::load(uvit::clip_vocab_path(""));
    uvit::fuzz::expect_clean([&] {
      for (int id : real.tokenize(prompt, 77))
        if (id < 0 || id >= real.vocab_size()) std::abort();
    });
    return 0;
  }
  uvit::fuzz::expect_clean([&] {
    uvit::ClipTokenizer t = uvit::ClipTokenizer::from_hf(vocab, merges);
    for (int id : t.tokenize(prompt, 77))
      if (id < 0 || id >= t.vocab_size()) std::abort();
  });
  // The merges list alone, as the original bpe_simple_vocab file.
  uvit::fuzz::expect_clean([&] { uvit::ClipTokenizer::from_bpe_file(merges); });
  return 0;
}
