// Writes the fuzzers' seed corpora with the project's own writers: `uvit_fuzz_seeds OUT` fills
// OUT/{safetensors,npy,image,clip_vocab,serve,idx,cifar,latent_stats,capi}/ (docs/fuzzing.md;
// run.sh adds the .pth, feature .npy, latent-stats .pt and config seeds from PyTorch, numpy and
// configs/).
#include <zlib.h>

#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "uvit.h"
#include "uvit/autoencoder.hpp"
#include "uvit/error.hpp"
#include "uvit/image.hpp"
#include "uvit/io.hpp"

namespace fs = std::filesystem;
using namespace uvit;

namespace {

std::vector<uint8_t> bytes_of(const fs::path& p) { return read_file(p.string()); }

void put(const fs::path& p, const std::string& prefix, const std::vector<uint8_t>& b) {
  std::ofstream f(p, std::ios::binary);
  f << prefix;
  f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
  UVIT_CHECK(f.good(), p.string(), ": cannot write");
}
void put(const fs::path& p, const std::string& s) { put(p, s, {}); }

Array ramp(DType t, std::vector<int64_t> shape) {
  Array a(t, std::move(shape));
  for (size_t i = 0; i < a.data.size(); ++i) a.data[i] = uint8_t(i * 37 + 11);
  return a;
}

// GPT-2's byte-to-symbol map (printable Latin-1 bytes themselves, the rest from U+0100 on), as
// UTF-8: the alphabet every CLIP vocabulary starts with.
std::vector<std::string> byte_symbols() {
  auto keep = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; };
  auto utf8 = [](unsigned c) {
    return c < 0x80 ? std::string(1, char(c))
                    : std::string{char(0xC0 | (c >> 6)), char(0x80 | (c & 0x3F))};
  };
  std::vector<std::string> v;
  for (int b = 0; b < 256; ++b)
    if (keep(b)) v.push_back(utf8(unsigned(b)));
  unsigned n = 0;
  for (int b = 0; b < 256; ++b)
    if (!keep(b)) v.push_back(utf8(256 + n++));
  return v;
}

}  // namespace

int main(int argc, char** argv) try {
  UVIT_CHECK(argc == 2, "usage: uvit_fuzz_seeds OUT");
  const fs::path out = argv[1];
  for (const char* d : {"safetensors", "npy", "image", "clip_vocab", "serve", "idx", "cifar",
                        "latent_stats", "capi"})
    fs::create_directories(out / d);
  const fs::path tmp = out / "tmp.bin";

  // safetensors: every dtype, metadata, a scalar, an empty tensor, a "module." prefix.
  NamedArrays all;
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::F64, DType::I64, DType::I32,
                  DType::I16, DType::I8, DType::U8, DType::Bool})
    all.emplace_back(std::string("t_") + dtype_name(t), ramp(t, {2, 3}));
  save_safetensors(tmp.string(), all, {{"config", "fmnist_uvit_tiny"}, {"step", "12"}});
  put(out / "safetensors" / "dtypes", "", bytes_of(tmp));
  save_safetensors(tmp.string(), {{"module.a", ramp(DType::F32, {})},
                                  {"module.b", ramp(DType::F16, {0, 4})},
                                  {"module.c", ramp(DType::BF16, {4, 1, 2})}});
  put(out / "safetensors" / "ddp", "", bytes_of(tmp));

  // npy / npz: the first byte picks the reader (even: .npy, odd: .npz).
  int k = 0;
  for (auto& [name, a] : all) {
    if (a.dtype == DType::BF16) continue;  // no .npy dtype
    save_npy(tmp.string(), a);
    put(out / "npy" / ("npy_" + std::to_string(k++)), std::string(1, '\0'), bytes_of(tmp));
  }
  save_npy(tmp.string(), ramp(DType::F32, {}));
  put(out / "npy" / "npy_scalar", std::string(1, '\0'), bytes_of(tmp));
  save_npz(tmp.string(), {{"x", ramp(DType::F32, {3})}, {"y", ramp(DType::I64, {2, 2})}});
  put(out / "npy" / "npz", std::string(1, '\1'), bytes_of(tmp));

  // Images: the first byte is the channel request (mod 5). PNGs of every colour type with text
  // chunks, a 24-bit BMP and a binary PGM (stb_image reads them all).
  std::vector<uint8_t> px(5 * 3 * 4);
  for (size_t i = 0; i < px.size(); ++i) px[i] = uint8_t(i * 13);
  for (int c = 1; c <= 4; ++c)
    put(out / "image" / ("png_c" + std::to_string(c)), std::string(1, char(c)),
        encode_png(px.data(), 5, 3, c, {{"parameters", "a photo, Steps: 20"}, {"uvit", "ü"}}));
  std::vector<uint8_t> bmp = {'B', 'M', 70, 0, 0, 0, 0, 0, 0, 0, 54, 0, 0, 0, 40, 0, 0,  0,
                              2,   0,   0,  0, 2, 0, 0, 0, 1, 0, 24, 0, 0, 0, 0,  0, 16, 0,
                              0,   0,   0,  0, 0, 0, 0, 0, 0, 0, 0,  0, 0, 0, 0,  0, 0,  0};
  for (int i = 0; i < 16; ++i) bmp.push_back(uint8_t(i * 16));
  put(out / "image" / "bmp", std::string(1, '\3'), bmp);
  put(out / "image" / "pgm", std::string(1, '\0'),
      {'P', '5', '\n', '2', ' ', '2', '\n', '2', '5', '5', '\n', 0, 64, 128, 255});

  // CLIP: vocab.json \0 merges.txt \0 prompt. A minimal complete vocabulary (the byte symbols,
  // their word-end forms, a few merges and the specials), and the real one (empty vocab part).
  std::vector<std::string> toks = byte_symbols();
  for (size_t i = 0, n = toks.size(); i < n; ++i) toks.push_back(toks[i] + "</w>");
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"a", "b"}, {"ab", "c</w>"}, {"t", "h"}, {"th", "e</w>"}};
  for (auto& [a, b] : merges) toks.push_back(a + b);
  toks.push_back("<|startoftext|>");
  toks.push_back("<|endoftext|>");
  nlohmann::json vocab = nlohmann::json::object();
  for (size_t i = 0; i < toks.size(); ++i) vocab[toks[i]] = i;
  std::string m = "#version: 0.2\n";
  for (auto& [a, b] : merges) m += a + " " + b + "\n";
  put(out / "clip_vocab" / "tiny",
      vocab.dump() + '\0' + m + '\0' + "the abc ABC, it's 3.5 \xc3\xa9t\xc3\xa9!");
  put(out / "clip_vocab" / "real_vocab",
      std::string(2, '\0') + "a photo of a cat's 12 paws 🐈 <|endoftext|>");

  // uvit serve: raw HTTP/1.1 requests.
  auto post = [](const std::string& path, const std::string& body) {
    return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
           "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  };
  const std::vector<uint8_t> png1 =
      encode_png(px.data(), 2, 2, 3, {{"parameters", "cat\nSteps: 3, Sampler: Euler, Seed: 7"}});
  std::string b64;
  {
    const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < png1.size(); i += 3) {
      uint32_t v = uint32_t(png1[i]) << 16;
      if (i + 1 < png1.size()) v |= uint32_t(png1[i + 1]) << 8;
      if (i + 2 < png1.size()) v |= png1[i + 2];
      b64 += t[v >> 18];
      b64 += t[(v >> 12) & 63];
      b64 += i + 1 < png1.size() ? t[(v >> 6) & 63] : '=';
      b64 += i + 2 < png1.size() ? t[v & 63] : '=';
    }
  }
  const std::vector<std::pair<std::string, std::string>> reqs = {
      {"health", "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"},
      {"caps", "GET /uvit/v1/capabilities HTTP/1.1\r\nHost: x\r\n\r\n"},
      {"txt2img",
       post(
           "/sdapi/v1/txt2img",
           R"({"prompt": "3", "steps": 2, "seed": 5, "cfg_scale": 2.5, "sampler_name": "Euler", "batch_size": 1, "width": 28})")},
      {"openai",
       post(
           "/v1/images/generations",
           R"({"prompt": "Trouser", "n": 1, "size": "28x28", "response_format": "b64_json", "steps": 1})")},
      {"jobs",
       post("/uvit/v1/jobs",
            R"({"class": 4, "n": 1, "steps": 1, "sampler": "dpm-solver", "first_index": 3})")},
      {"jobs_options",
       post(
           "/uvit/v1/jobs",
           R"({"class": 4, "steps": 1, "cfg_power": 2, "uvit_scale": 0.5, "guidance_channels": "all", "skip_cache": 2})")},
      {"job_get", "GET /uvit/v1/jobs/0123abcd HTTP/1.1\r\nHost: x\r\n\r\n"},
      {"job_events", "GET /uvit/v1/jobs/0123abcd/events HTTP/1.1\r\nHost: x\r\n\r\n"},
      {"cancel", post("/uvit/v1/jobs/0123abcd/cancel", "")},
      {"pnginfo",
       post("/sdapi/v1/png-info", R"({"image": "data:image/png;base64,)" + b64 + R"("})")},
      {"options", post("/sdapi/v1/options", R"({"sd_model_checkpoint": "x"})")},
      {"progress", "GET /sdapi/v1/progress?skip_current_image=true HTTP/1.1\r\nHost: x\r\n\r\n"},
      {"chunked",
       "POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
       "chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n"},
      {"options_cors", "OPTIONS /sdapi/v1/txt2img HTTP/1.1\r\nHost: x\r\nOrigin: http://a\r\n\r\n"},
  };
  for (auto& [name, r] : reqs) put(out / "serve" / name, r);

  // idx: the images file's length (4 bytes, little endian), the images file, the labels file;
  // raw and gzipped (fuzz_idx).
  const auto le32 = [](size_t v) {
    return std::string{char(v), char(v >> 8), char(v >> 16), char(v >> 24)};
  };
  const auto idx = [](uint32_t magic, std::vector<uint32_t> dims, size_t payload) {
    std::vector<uint8_t> b;
    dims.insert(dims.begin(), magic);
    for (uint32_t v : dims)
      for (int k = 3; k >= 0; --k) b.push_back(uint8_t(v >> (8 * k)));
    for (size_t i = 0; i < payload; ++i) b.push_back(uint8_t(i * 7 % 10));
    return b;
  };
  const auto gz = [&](const std::vector<uint8_t>& b) {
    gzFile f = gzopen(tmp.string().c_str(), "wb9");
    UVIT_CHECK(f && gzwrite(f, b.data(), unsigned(b.size())) == int(b.size()) && gzclose(f) == Z_OK,
               "gzip seed");
    return bytes_of(tmp);
  };
  const std::vector<uint8_t> images = idx(0x803, {3, 4, 5}, 60), labels = idx(0x801, {3}, 3);
  auto cat_bytes = [](std::vector<uint8_t> a, const std::vector<uint8_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  put(out / "idx" / "raw", le32(images.size()), cat_bytes(images, labels));
  const std::vector<uint8_t> gi = gz(images), gl = gz(labels);
  put(out / "idx" / "gz", le32(gi.size()), cat_bytes(gi, gl));
  put(out / "idx" / "gz_images", le32(gi.size()), cat_bytes(gi, labels));
  // A gzip stream that inflates past what its header declares (the bound's error).
  put(out / "idx" / "gz_long", le32(0), gz(idx(0x803, {1, 2, 2}, 4096)));

  // CIFAR-10: one record (label, 3072 pixels), tiled to a whole batch (first byte odd) or not.
  std::vector<uint8_t> rec(3073);
  for (size_t i = 0; i < rec.size(); ++i) rec[i] = uint8_t(i % 10);
  put(out / "cifar" / "tiled", std::string(1, '\1'), rec);
  put(out / "cifar" / "short", std::string(1, '\0'), rec);

  // The C API: a uvit_gen_params as raw bytes (plus 32 bytes of a newer header), then 8 class
  // ids and NUL-separated sampler, negative prompt and prompts (fuzz_capi).
  const auto gen = [&](const std::string& name, const std::function<void(uvit_gen_params&)>& set,
                       const std::string& strings) {
    std::vector<uint8_t> b(sizeof(uvit_gen_params) + 32 + 8 * sizeof(int));
    uvit_gen_params p{};
    p.struct_size = sizeof p;
    p.n = 2;
    p.n_classes = 2;
    p.guidance_w = -1;
    p.seed = 5;
    set(p);
    std::memcpy(b.data(), &p, sizeof p);
    const int classes[8] = {3, 7, 0, 9, 10, -1, 11, 2};
    std::memcpy(b.data() + sizeof(uvit_gen_params) + 32, classes, sizeof classes);
    put(out / "capi" / name, "", b);
    std::ofstream(out / "capi" / name, std::ios::app) << strings;
  };
  gen(
      "plain", [](uvit_gen_params&) {}, std::string("\0", 1));
  gen(
      "sampler", [](uvit_gen_params& p) { p.steps = 3; }, std::string("DPM++ 2M\0\0", 10));
  gen(
      "options",
      [](uvit_gen_params& p) {
        p.has = UVIT_GEN_HAS_CFG_SCALE | UVIT_GEN_HAS_CFG_POWER;
        p.cfg_scale = 0.5;
        p.cfg_power = 2;
        p.guidance_channels = -1;
      },
      std::string("\0", 1));
  gen(
      "old_struct", [](uvit_gen_params& p) { p.struct_size = offsetof(uvit_gen_params, has); },
      std::string("\0", 1));
  gen(
      "prompts", [](uvit_gen_params& p) { p.n_prompts = 2; },
      std::string("euler-ode\0blurry\0a cat\0a dog", 29));

  // Latent statistics: ours (.safetensors; run.sh adds LightningDiT's .pt from PyTorch).
  save_latent_stats(tmp.string(), {{0.1f, -0.2f, 0.3f, 0.f}, {1.f, 2.f, 0.5f, 4.f}});
  put(out / "latent_stats" / "four", std::string(1, '\2'), bytes_of(tmp));
  save_latent_stats(tmp.string(), {{0.5f}, {1.5f}});
  put(out / "latent_stats" / "one", std::string(1, '\0'), bytes_of(tmp));
  fs::remove(tmp);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "uvit_fuzz_seeds: %s\n", e.what());
  return 1;
}
