// FiT's official latent root (docs/fit.md "Folders"), as uvit info and convert-fit-latents
// recognise it: one rule for both.
#pragma once
#include <string>

namespace uvit::cli {

// L ("256", "1024") when `dir` holds a folder the official loader reads for target length L
// (IN1kLatentDataset: from_16_to_L, greater_than_L_resize, greater_than_L_crop; any one of them,
// as the loader lists each and takes what is there); "" for any other folder (less_than_16 alone,
// which the loader never reads, included). Throws uvit::Error naming both lengths when it holds
// the folders of two.
std::string fit_latent_length(const std::string& dir);

}  // namespace uvit::cli
