// The official file names the docs name, each with the page and section that says where to get
// (or how to convert) it. One table: add a row when a page names a new released file.
#include "io/official_files.hpp"

#include "uvit/error.hpp"

namespace uvit::io {

namespace {

struct OfficialFile {
  const char* name;  // the released file name, as the docs write it
  const char* what;
  const char* where;  // docs page, "section"
};

constexpr OfficialFile kOfficialFiles[] = {
    {"autoencoder_kl.pth", "U-ViT's Stable Diffusion autoencoder",
     "docs/autoencoder.md, \"Weights and config\""},
    {"autoencoder_kl_ema.pth", "U-ViT's Stable Diffusion autoencoder",
     "docs/autoencoder.md, \"Weights and config\""},
    {"DiT-XL-2-256x256.pt", "DiT's released checkpoint",
     "docs/dit.md, \"Checkpoints: which files load, and how\""},
    {"DiT-XL-2-512x512.pt", "DiT's released checkpoint",
     "docs/dit.md, \"Checkpoints: which files load, and how\""},
    {"mdt_xl2_v2_ckpt.pt", "MDTv2-XL/2's released checkpoint", "docs/mdt.md, \"Presets\""},
    {"stvae.pt", "LaVin-DiT's ST-VAE", "docs/stvae.md, \"Commands\""},
    {"vavae-imagenet256-f16d32-dinov2.pt", "LightningDiT's VA-VAE",
     "docs/autoencoder.md, \"VA-VAE f16d32 (LightningDiT's tokenizer)\""},
    {"latents_stats.pt", "LightningDiT's VA-VAE latent statistics",
     "docs/autoencoder.md, \"VA-VAE f16d32 (LightningDiT's tokenizer)\""},
    {"dinov3_vits16plus_pretrain_lvd1689m-4057cbaa.pth", "SVG's DINOv3 ViT-S+/16 (gated)",
     "docs/svg_encoder.md, \"DINOv3 ViT-S+/16 (`dinov3_vits16plus`)\""},
    {"dinov3_sp_stats.pt", "SVG's DINOv3 feature statistics", "docs/svg.md, \"Recipes\""},
};

}  // namespace

std::string official_file_hint(const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  for (const OfficialFile& f : kOfficialFiles)
    if (name == f.name) return cat(" (", f.what, ": ", f.where, ")");
  return "";
}

}  // namespace uvit::io
