// The convolution kinds of the autoencoders' CPU encode and decode (the SD/VA-VAE and the ST-VAE):
// one choice, so that the two keep the same bytes at any thread count together.
#pragma once
#include "uvit/nn.hpp"

namespace uvit {

// The CPU convolutions run kinds that keep one summation order at any thread count (the
// plain-nchw default gave other bytes at 2-7 threads than at 1): the encoder oneDNN's blocked
// kind, the decoder the same in row bands with its weights reordered per call, since the blocked
// kind's kept weights and whole reordered activations raised a 256 px decode's peak past what
// docs/memory.md "The decode's peak" bounds. docs/benchmarks.md, "The autoencoder's convolution
// kind"; the ST-VAE's: docs/stvae.md "Threads". UVIT_CONV_IMPL still overrides them; other
// backends ignore them.
inline constexpr nn::ConvImpl kEncoderConv = nn::ConvImpl::OneDnn;
inline constexpr nn::ConvImpl kDecoderConv = nn::ConvImpl::OneDnnBands;

}  // namespace uvit
