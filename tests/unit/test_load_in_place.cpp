// The encoders read their weights straight into place (docs/memory.md, "Loading the encoders'
// weights"): the peak resident size of a load (/proc/self/status VmHWM, reset through
// /proc/self/clear_refs) stays near the weights they keep, whatever else the file holds, and a
// load from a file gives the same outputs as one from arrays in memory.
#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <string>

#include "core/mem_limit.hpp"
#include "error_of.hpp"
#include "models/dinov3.hpp"
#include "temp_dir.hpp"
#include "uvit/autoencoder.hpp"
#include "uvit/backend.hpp"
#include "uvit/clip.hpp"
#include "uvit/clip_vision.hpp"
#include "uvit/inception.hpp"
#include "uvit/io.hpp"

using namespace uvit;

namespace {

constexpr size_t kMiB = size_t(1) << 20;

// A field of /proc/self/status in bytes ("VmRSS", "VmHWM").
size_t status_bytes(const std::string& field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(field + ":", 0) == 0)
      return size_t(std::stoull(line.substr(field.size() + 1))) * 1024;
  return 0;
}

// The bytes by which the resident size peaked above its level before load() ran.
template <class F>
size_t peak_growth(F&& load) {
  { std::ofstream("/proc/self/clear_refs") << "5"; }  // VmHWM := VmRSS
  const size_t before = status_bytes("VmRSS");
  EXPECT_LE(status_bytes("VmHWM"), before + kMiB) << "the peak was not reset";
  load();
  return status_bytes("VmHWM") - before;
}

// A safetensors file of fp32 tensors written piece by piece (the test holds none of them whole),
// values 0.1 + (k mod 97) / 970 (finite and positive: DINOv3's periods and masks accept them).
void write_weights(const std::string& path, const std::vector<TensorInfo>& ts) {
  save_safetensors(path, ts, [&](size_t i, const ByteSink& sink) {
    std::vector<float> buf(size_t(1) << 16);
    for (int64_t k0 = 0, n = ts[i].numel(); k0 < n; k0 += int64_t(buf.size())) {
      const size_t m = size_t(std::min<int64_t>(n - k0, int64_t(buf.size())));
      for (size_t j = 0; j < m; ++j)
        buf[j] = 0.1f + float((k0 + int64_t(j) + int64_t(i)) % 97) / 970.f;
      sink(buf.data(), m * sizeof(float));
    }
  });
}

ClipTextConfig small_text() {
  ClipTextConfig c;
  c.vocab_size = 100, c.hidden_size = 32, c.intermediate_size = 64, c.num_hidden_layers = 1;
  c.num_attention_heads = 2, c.projection_dim = 16;
  return c;
}

ClipVisionConfig small_vision() {
  ClipVisionConfig c;
  c.hidden_size = 32, c.intermediate_size = 64, c.num_hidden_layers = 1, c.num_attention_heads = 2;
  c.image_size = 28, c.patch_size = 14, c.projection_dim = 16;
  return c;
}

// HF CLIPModel names of both small towers.
std::vector<TensorInfo> clip_tensors() {
  const ClipTextConfig t = small_text();
  const int64_t H = t.hidden_size, I = t.intermediate_size;
  std::vector<TensorInfo> ts;
  const std::string e = "text_model.embeddings.", l = "text_model.encoder.layers.0.";
  ts.push_back({e + "token_embedding.weight", DType::F32, {t.vocab_size, H}});
  ts.push_back({e + "position_embedding.weight", DType::F32, {t.max_position_embeddings, H}});
  for (const char* n : {"layer_norm1", "layer_norm2"}) {
    ts.push_back({l + n + ".weight", DType::F32, {H}});
    ts.push_back({l + n + ".bias", DType::F32, {H}});
  }
  for (const char* n : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
    ts.push_back({l + "self_attn." + n + ".weight", DType::F32, {H, H}});
    ts.push_back({l + "self_attn." + n + ".bias", DType::F32, {H}});
  }
  ts.push_back({l + "mlp.fc1.weight", DType::F32, {I, H}});
  ts.push_back({l + "mlp.fc1.bias", DType::F32, {I}});
  ts.push_back({l + "mlp.fc2.weight", DType::F32, {H, I}});
  ts.push_back({l + "mlp.fc2.bias", DType::F32, {H}});
  ts.push_back({"text_model.final_layer_norm.weight", DType::F32, {H}});
  ts.push_back({"text_model.final_layer_norm.bias", DType::F32, {H}});
  ts.push_back({"text_projection.weight", DType::F32, {t.projection_dim, H}});
  for (const auto& [name, shape] : clip_vision_param_shapes(small_vision()))
    ts.push_back({name, DType::F32, shape});
  return ts;
}

// kl-f8's layout at half its width (ch 64): its tensors, their bytes and the decoder's part
// (decoder.* and post_quant_conv.*).
struct HalfKlF8 {
  AutoencoderConfig cfg;
  std::vector<TensorInfo> ts;
  size_t bytes = 0, decoder = 0;
  HalfKlF8() {
    cfg.ch = 64;
    for (const auto& [name, shape] : autoencoder_param_shapes(cfg)) {
      ts.push_back({name, DType::F32, shape});
      bytes += ts.back().nbytes();
      if (name.rfind("decoder.", 0) == 0 || name.rfind("post_quant_conv.", 0) == 0)
        decoder += ts.back().nbytes();
    }
  }
};

}  // namespace

// Each CLIP tower reads only its own tensors: 128 MiB of others in the file (a CLIPModel's other
// tower, say) are never resident. Reading the whole file first, as before, peaked above 128 MiB.
TEST(LoadInPlace, ClipTowersReadOnlyTheirTensors) {
  uvit_test::TempDir t("uvit_inplace");
  std::vector<TensorInfo> ts = clip_tensors();
  ts.push_back({"other.big", DType::F32, {int64_t(32) << 20}});  // 128 MiB, ignored by both
  const std::string path = (t / "clip.safetensors");
  write_weights(path, ts);
  auto be = make_backend("cpu");
  ClipTextModel text(small_text(), *be);
  ClipVisionModel vision(small_vision(), *be);
  EXPECT_LT(peak_growth([&] { text.load_file(path); }), 16 * kMiB);
  EXPECT_LT(peak_growth([&] { vision.load_file(path); }), 16 * kMiB);
  EXPECT_TRUE(text.has_projection());

  // The same outputs as towers loaded from the arrays (the small tensors only).
  NamedArrays sd = load_weights(path);
  sd.pop_back();
  ClipTextModel text2(small_text(), *be);
  ClipVisionModel vision2(small_vision(), *be);
  text2.load(sd, "arrays");
  vision2.load(sd, "arrays");
  const std::vector<int> ids = {0, 5, 7, 99};
  EXPECT_EQ(text.forward(ids, 1, 4), text2.forward(ids, 1, 4));
  const std::vector<float> px(size_t(3) * 28 * 28, 0.25f);
  EXPECT_EQ(vision.forward(px.data(), 1), vision2.forward(px.data(), 1));
}

// DINOv3 (ViT-S+/16: 29 M parameters, 115 MB) holds its weights once while loading on the CPU:
// the reads go into the backend buffer, where the LayerScale folds happen. Before, the file's
// arrays, a host copy and the backend buffer made about three times the weights.
TEST(LoadInPlace, Dinov3HoldsItsWeightsOnce) {
  uvit_test::TempDir t("uvit_inplace");
  const Dinov3Config cfg;
  const ParamTable table = dinov3_param_table(cfg);
  std::vector<TensorInfo> ts;
  for (const ParamEntry& e : table.entries()) ts.push_back({e.name, DType::F32, e.shape});
  const std::string path = (t / "dinov3.safetensors");
  write_weights(path, ts);
  const size_t bytes = table.total() * sizeof(float);
  auto be = make_backend("cpu");
  Dinov3 net(cfg, *be);
  const size_t grew = peak_growth([&] { net.load_file(path); });
  EXPECT_GT(grew, bytes * 9 / 10) << "the measure saw no load";
  EXPECT_LT(grew, bytes * 13 / 10) << bytes / kMiB << " MiB of weights";

  Dinov3 net2(cfg, *be);
  net2.load(load_weights(path), "arrays");
  const std::vector<float> px(size_t(3) * 32 * 32, 0.5f);
  EXPECT_EQ(net.patch_tokens(px, 1, 32), net2.patch_tokens(px, 1, 32));
}

// The FID Inception folds its BatchNorms straight into the backend buffer, sized by a pass over
// the shapes first: the construction adds about one copy of the weights to the arrays it is given.
// Before, a growing host vector and then the backend buffer peaked above twice.
TEST(LoadInPlace, InceptionPacksIntoItsBuffer) {
  const NamedArrays sd = FidInception::random_state_dict(1);
  size_t bytes = 0;
  for (const auto& [name, a] : sd) bytes += a.data.size();
  auto be = make_backend("cpu");
  std::unique_ptr<FidInception> net;
  const size_t grew = peak_growth([&] { net = std::make_unique<FidInception>(sd, *be, "random"); });
  EXPECT_GT(grew, bytes * 9 / 10) << "the measure saw no load";
  EXPECT_LT(grew, bytes * 13 / 10) << bytes / kMiB << " MiB of weights";
}

// The KL autoencoder (SD kl-f8's layout at half its width: 21 M parameters, 84 MB) reads each
// tensor of the file into its place in the backend buffer: the load holds its weights once, and
// 64 MiB of tensors outside its modules (a VA-VAE checkpoint's loss.*) are never resident. Before,
// the file was read whole into arrays, then copied over: about twice the weights and the rest.
TEST(LoadInPlace, AutoencoderHoldsItsWeightsOnce) {
  uvit_test::TempDir t("uvit_inplace");
  HalfKlF8 h;
  const AutoencoderConfig& cfg = h.cfg;
  std::vector<TensorInfo>& ts = h.ts;
  const size_t bytes = h.bytes;
  ts.push_back({"loss.big", DType::F32, {int64_t(16) << 20}});  // 64 MiB, skipped
  const std::string path = (t / "ae.safetensors");
  write_weights(path, ts);
  std::unique_ptr<Autoencoder> ae;
  const size_t grew =
      peak_growth([&] { ae = std::make_unique<Autoencoder>(Autoencoder::load(path, cfg)); });
  EXPECT_GT(grew, bytes * 9 / 10) << "the measure saw no load";
  EXPECT_LT(grew, bytes * 13 / 10) << bytes / kMiB << " MiB of weights";
  EXPECT_EQ(ae->skipped(), "skipped 1 tensors outside the autoencoder: loss.* (1)");

  // The same outputs as one built from the arrays.
  NamedArrays sd = load_weights(path);
  sd.pop_back();
  const Autoencoder ae2(cfg, std::move(sd), "arrays");
  Array z(DType::F32, {1, 4, 4, 4});
  for (int64_t i = 0; i < z.numel(); ++i) z.as<float>()[i] = 0.01f * float(i % 13) - 0.05f;
  EXPECT_EQ(ae->decode(z).data, ae2.decode(z).data);
}

// A decode-only load reads the decoder's tensors alone (the encoder's are checked, never read),
// and a decode keeps about two and a half of its largest activations, under three (docs/memory.md,
// "The decode's peak"): kl-f8's layout at half width decoding a 4 x 32 x 32 latent, whose largest
// activation is 128 channels at 256 x 256 (32 MiB). Before, the load held both halves and the
// decode's pool kept every buffer of every level: 123 MiB, and its peak grew by 125 MiB. The
// backend's live bytes are exact; the peak resident size also counts the host's temporaries (and
// less where earlier tests left freed memory to reuse).
TEST(LoadInPlace, AutoencoderDecodeHoldsItsDecoderAndFewActivations) {
  uvit_test::TempDir t("uvit_inplace");
  const HalfKlF8 h;
  const AutoencoderConfig& cfg = h.cfg;
  const size_t decoder = h.decoder;
  const std::string path = (t / "ae.safetensors");
  write_weights(path, h.ts);
  const size_t live0 = live_buffer_bytes();
  std::unique_ptr<Autoencoder> ae;
  const size_t loaded = peak_growth([&] {
    ae = std::make_unique<Autoencoder>(
        Autoencoder::load(path, cfg, "cpu", "", AutoencoderUse::decode));
  });
  const size_t weights = live_buffer_bytes() - live0;
  EXPECT_GE(weights, decoder);
  EXPECT_LT(weights, decoder + kMiB) << decoder / kMiB << " MiB of decoder weights";
  EXPECT_LT(loaded, decoder * 13 / 10);

  // A first small decode starts the threads and the libraries (pages not counted below).
  Array x = ae->decode(Array(DType::F32, {1, 4, 4, 4}));
  Array z(DType::F32, {1, 4, 32, 32});
  for (int64_t i = 0; i < z.numel(); ++i) z.as<float>()[i] = 0.01f * float(i % 13) - 0.05f;
  const size_t largest = size_t(128) * 256 * 256 * sizeof(float);
  const size_t grew = peak_growth([&] { x = ae->decode(z); });
  const size_t kept = live_buffer_bytes() - live0 - weights;  // the pool, between passes
  EXPECT_GE(kept, largest * 2);
  EXPECT_LT(kept, largest * 3) << kept / kMiB << " MiB kept for a largest activation of "
                               << largest / kMiB << " MiB";
  EXPECT_LT(grew, largest * 3) << grew / kMiB << " MiB";
  EXPECT_EQ(x.shape, (std::vector<int64_t>{1, 3, 256, 256}));
  EXPECT_NE(uvit_test::error_of([&] {
              ae->encode_moments(Array(DType::F32, {1, 3, 8, 8}));
            }).find("autoencoder encode: this autoencoder was loaded to decode only"),
            std::string::npos);
}
