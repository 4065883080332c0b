// The live preview's pixels (include/uvit/pipeline.hpp, docs/samplers.md "Preview"): a pixel
// model's x0 as is; a latent one's through A1111's "Approximate cheap" linear latent -> RGB map,
// not the autoencoder (a full decode per preview costs as much as several network evaluations on
// a CPU).
#include <array>
#include <exception>
#include <memory>

#include "uvit/autoencoder.hpp"
#include "uvit/pipeline.hpp"

namespace uvit {
namespace {

// AUTOMATIC1111 stable-diffusion-webui modules/sd_vae_approx.py cheap_approximation (SD 1.x), from
// keturn's fit (discuss.huggingface.co/t/decoding-latents-to-rgb-without-upscaling/23204/2):
// RGB in about [-1, 1] = sum over latent channel l of kRgb[l] · (Stable Diffusion's latent, the
// first stage's z times 0.18215). docs/samplers.md cites both.
constexpr std::array<std::array<float, 3>, 4> kRgb = {{{0.298f, 0.207f, 0.208f},
                                                       {0.187f, 0.286f, 0.173f},
                                                       {-0.158f, 0.189f, 0.264f},
                                                       {-0.184f, -0.271f, -0.473f}}};
constexpr float kSdScale = 0.18215f;

// The kl-f8 family's map only: 4 latent channels decoded to RGB.
std::string no_cheap_map(const AutoencoderConfig& a) {
  if (a.embed_dim == 4 && a.out_ch == 3 && !a.decoder_only) return "";
  return cat("its autoencoder (", a.embed_dim,
             " latent channels) has no cheap latent-to-RGB map; only Stable Diffusion's kl-f8 "
             "family (4 channels) has one (docs/samplers.md \"Preview\")");
}

}  // namespace

struct Pipeline::PreviewMap {
  std::string unavailable;  // why there is none ("" when there is)
  AutoencoderConfig ae;
  LatentStats stats;  // empty: none
};

std::string preview_unavailable(const Config& cfg, const std::string& autoencoder_config) {
  if (!cfg.json.contains("z_shape")) return "";
  return no_cheap_map(preset_autoencoder_config(cfg.json, autoencoder_config));
}

void Pipeline::make_preview_map() {
  if (!cfg_.json.contains("z_shape")) return;
  auto m = std::make_shared<PreviewMap>();
  if (ae_) {
    m->ae = ae_->config();
    m->stats = ae_->latent_stats();
    m->unavailable = no_cheap_map(m->ae);
  } else {
    try {  // no image is decoded: the preview alone needs them, and says so when they fail
      m->ae = preset_autoencoder_config(cfg_.json, opt_.autoencoder_config);
      m->unavailable = no_cheap_map(m->ae);
      if (m->unavailable.empty())
        m->stats = preset_latent_stats(cfg_.json, opt_.latent_stats, m->ae.embed_dim);
    } catch (const std::exception& e) {  // a sampler of latents alone never fails for them
      m->unavailable = e.what();
    }
  }
  preview_map_ = std::move(m);
}

std::string Pipeline::preview_unavailable() const {
  return preview_map_ ? preview_map_->unavailable : "";
}

bool Pipeline::can_preview() const { return preview_unavailable().empty(); }

std::vector<Image> Pipeline::preview_images(const float* x0, int B) const {
  const std::string why = preview_unavailable();
  UVIT_CHECK(why.empty(), "config ", cfg_.config_name, ": no preview: ", why);
  const NetSpec& s = cfg_.spec;
  const int C = s.in_chans, H = s.img_size, W = s.width();
  const size_t plane = size_t(H) * W, numel = size_t(C) * plane;
  std::vector<Image> out;
  for (int b = 0; b < B; ++b) {
    const float* z = x0 + size_t(b) * numel;
    if (!preview_map_) {
      out.push_back(to_image(z, C, H, W));
      continue;
    }
    const PreviewMap& m = *preview_map_;
    std::vector<float> rgb(3 * plane, 0.f);
    for (int l = 0; l < C; ++l)
      for (size_t k = 0; k < plane; ++k) {
        const float v =
            latent_decoder_input(m.stats, m.ae.scale_factor, l, z[size_t(l) * plane + k]) *
            kSdScale;
        for (int r = 0; r < 3; ++r) rgb[size_t(r) * plane + k] += kRgb[size_t(l)][size_t(r)] * v;
      }
    out.push_back(to_image(rgb.data(), 3, H, W));
  }
  return out;
}

}  // namespace uvit
