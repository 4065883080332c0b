// A state_dict's directory as the autoencoders (SD/VA-VAE and ST-VAE) match it, before any tensor
// is read: the kept modules, the diffusers names and the strict check work on names and shapes, so
// the loaders read each tensor once from the file into its place (docs/memory.md), and `uvit
// convert`'s NamedArrays forms (include/uvit/autoencoder.hpp) apply the same edits to its arrays.
#pragma once
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "uvit/autoencoder.hpp"
#include "uvit/io.hpp"

namespace uvit {

// (the tensor's index in its reader or arrays, its name, dtype and shape as the edits leave them).
using TensorList = std::vector<std::pair<size_t, TensorInfo>>;
TensorList tensor_list(const std::vector<TensorInfo>& tensors);

// As the NamedArrays forms of include/uvit/autoencoder.hpp.
std::string keep_autoencoder_tensors(TensorList& t, bool decoder_only = false);
bool autoencoder_from_diffusers(TensorList& t, int levels);
void check_autoencoder_weights(const TensorList& t, const AutoencoderConfig& cfg,
                               const std::string& what);
// Whether tensor `name` belongs to the half that `use` runs (decoder.* and post_quant_conv.*
// decode; the rest encodes): the SD/VA-VAE and the ST-VAE loaders read only those.
bool autoencoder_tensor_used(const std::string& name, AutoencoderUse use);
void check_weight_shapes(const TensorList& t,
                         const std::vector<std::pair<std::string, std::vector<int64_t>>>& expected,
                         const std::string& what, const std::string& builtin);

}  // namespace uvit
