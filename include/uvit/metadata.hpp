// Generation parameters in PNG text chunks, in AUTOMATIC1111's `parameters` format (so A1111,
// sd.cpp and image viewers show how an image was made) plus a `uvit-params` JSON record.
// Format, quoting and the parser's rules: docs/serve.md "PNG metadata".
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace uvit {

// What one image (or a grid) records. Names are basenames, never paths.
struct ImageParams {
  std::string prompt;           // text models: the prompt; class models: the class name (or id)
  std::string negative_prompt;  // text models, when used
  int class_id = -1;            // class models
  std::string sampler;
  int steps = 0;
  double guidance_w = 1;  // A1111's CFG scale = U-ViT's s + 1
  uint64_t seed = 0, index = 0;
  int width = 0, height = 0;
  std::string model;                            // the preset (config) name
  std::string weights, weights_sha256;          // basename, full SHA-256 hex
  std::string autoencoder, autoencoder_sha256;  // latent models
  std::string schedule;
  int batch_size = 0;  // grids: the number of images
  // `uvit sample`'s, for resuming --dir (docs/cli.md "--dir"): the network's activation
  // precision ("" = not recorded) and the samples per network batch (0 = not recorded).
  std::string precision;
  int mini_batch = 0;
  // Sampler settings beyond the above (flow presets' shift, cfg_interval, ...; key -> value).
  std::map<std::string, std::string> extra;
};

// "Steps: 4, Sampler: dpm-solver, CFG scale: 2, ..." with the prompt line(s) first.
std::string a1111_parameters(const ImageParams& p);
// The `uvit-params` JSON (schema uvit.image.params/v1).
std::string params_record(const ImageParams& p);
// The text chunks every PNG we write carries: {"parameters", "uvit-params"}.
std::map<std::string, std::string> png_metadata(const ImageParams& p);
// A grid's chunks: its first image's parameters (as A1111 does) with "Batch size: n".
std::map<std::string, std::string> grid_metadata(ImageParams first, int n);

// A1111's quote(): values holding ',', ':' or a newline become a JSON string.
std::string a1111_quote(const std::string& v);
// A port of A1111's parse_generation_parameters (infotext_utils.py) from its documented rules:
// "Prompt", "Negative prompt", then each "Key: value" of the last line ("Size: WxH" -> Size-1,
// Size-2; JSON-quoted values unquoted). Keys in order of appearance.
std::vector<std::pair<std::string, std::string>> parse_a1111_parameters(const std::string& text);

// Lower-case hex SHA-256 of a file (OpenSSL); A1111's "Model hash" is its first 10 characters.
std::string file_sha256(const std::string& path);
// The basename of a path ("/a/b/c.pth" -> "c.pth").
std::string base_name(const std::string& path);

// Version and git commit stamped in at build time ("0.1.0", "abc1234" or "unknown").
const char* version_string();
const char* commit_string();

}  // namespace uvit
