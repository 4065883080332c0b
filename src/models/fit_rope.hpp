// FiTv2's 2-D RoPE with its resolution-extrapolation scalings (whlzy/FiT fit/model/rope.py
// VisionRotaryEmbedding, docs/fit.md "RoPE"): per-axis frequencies for an h x w token grid, and
// the cos/sin tables the attention layer reads.
#pragma once
#include <string>
#include <vector>

namespace uvit {

struct FitRope {
  // normal, linear, ntk-aware, ntk-aware-pro1, ntk-aware-pro2, ntk-by-parts, yarn (custom_freqs).
  std::string custom_freqs = "normal";
  double theta = 10000;  // rope_theta
  int max_pe_len_h = 0;  // the grid the scaling targets (0: the network's grid)
  int max_pe_len_w = 0;
  bool decouple = false;   // h and w scaled by their own lengths (else both by the max)
  int ori_max_pe_len = 0;  // the training grid side (16 for the 256-px models)
  // online_rope: each sample's tables scaled for its own grid (online_get_2d_rope_from_grid), so
  // max_pe_len_h/w are not read.
  bool online = false;
  bool scaled() const { return custom_freqs != "normal"; }
};

// The names custom_freqs accepts (for error messages).
const char* fit_rope_names();
bool fit_rope_known(const std::string& custom_freqs);

// dim/2 frequencies (dim = head_dim / 2) of one axis whose scaling length is max_pe_len, in
// float32 as torch computes them (get_1d_rope_freqs; `normal` ignores the length).
std::vector<float> fit_rope_freqs(const FitRope& r, int dim, int max_pe_len);
// The factor on both cos and sin: yarn's mscale, ntk-aware-pro1/2's proportions, else 1.
float fit_rope_magnitude(const FitRope& r, int pe_h, int pe_w);
// cos and sin [gh * gw, Dh] (host): token i*gw + j; features [0, Dh/2) rotate by the row i with
// the h frequencies, [Dh/2, Dh) by the column j with the w ones, pair (2k, 2k+1) at angle
// pos * f_k; the scaling lengths are max_pe_len_h/w or, when 0 or online, gh and gw.
void fit_rope_tables(const FitRope& r, int gh, int gw, int Dh, float* cos, float* sin);

}  // namespace uvit
