// `--versions resize|crop|both` and its alias `--crop` (the official random: 'crop'), taken by
// convert-fit-latents and extract-features --fit (docs/fit.md).
#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "uvit/error.hpp"

namespace uvit::cli {

// After parsing: --crop sets `versions` to crop. With a --versions that says otherwise it is
// refused (`--crop --versions resize` drew the crops silently).
inline void take_crop_alias(bool crop, const CLI::Option& versions_option, std::string& versions) {
  UVIT_CHECK(!crop || versions_option.count() == 0 || versions == "crop",
             "--crop is --versions crop, not ", versions);
  if (crop) versions = "crop";
}

}  // namespace uvit::cli
