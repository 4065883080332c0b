// The generation pipeline behind the C API (include/uvit.h), `uvit serve` and `uvit sample`: a
// network, its autoencoder and CLIP text encoder loaded once; requests resolved against the
// preset's defaults; generate() (generate.hpp) run with cancellation; latents decoded; every image
// returned with its A1111-style metadata (metadata.hpp). docs/c_api.md.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "uvit/class_names.hpp"
#include "uvit/config.hpp"
#include "uvit/error.hpp"
#include "uvit/generate.hpp"
#include "uvit/image.hpp"
#include "uvit/metadata.hpp"

namespace uvit {

class Autoencoder;
class Backend;
class ClipTextModel;
class ClipTokenizer;
class Network;

// Thrown by Pipeline::generate when uvit_cancel / Pipeline::cancel or the progress callback stops
// it (at the next network evaluation or decode chunk).
struct Cancelled : Error {
  Cancelled() : Error("generation cancelled") {}
};

struct PipelineOptions {
  std::string config;            // preset name, JSON file or training run folder
  std::vector<std::string> set;  // "section.key=value" overrides
  std::string weights;           // .safetensors or .pth
  std::string autoencoder;       // latent presets: the KL autoencoder (else unused)
  std::string
      autoencoder_config;    // "" = the preset's autoencoder.config, else Stable Diffusion kl-f8
  std::string latent_stats;  // latent presets: per-channel mean/std ("" = the preset's)
  std::string clip;          // text presets: CLIPTextModel weights ("" = contexts only)
  std::string clip_config, vocab;  // "" = ViT-L/14 and the repository's vocabulary
  std::string device = "cpu";      // cpu or cuda
  std::string precision;           // "" = the device's default
  bool decode = true;              // load the autoencoder (false: latents only)
  // Hash the weights and autoencoder files for the metadata (false: the model name only, for
  // callers that write no PNG).
  bool identify = true;
};

enum class ModelKind { Unconditional, Class, Text };
const char* model_kind_name(ModelKind k);  // "uncond", "class", "t2i"

struct GenerationRequest {
  int n = 1;
  std::vector<int> classes;          // class models: sample i gets classes[i mod size]
  std::vector<std::string> prompts;  // text models: sample i gets prompts[i mod size]
  std::string negative_prompt;       // text models: the unconditional context's prompt
  // Text models without CLIP: precomputed contexts [n, L, D] and the empty prompt's [L, D].
  std::vector<float> contexts, null_context;
  std::string sampler;        // "" = the preset's; A1111 spellings accepted (canonical_sampler)
  int steps = 0;              // 0 = the preset's
  double guidance_w = -1;     // w = s + 1 (1 = off); < 0 = the preset's
  double cfg_scale = -1;      // U-ViT's s itself, used when guidance_w < 0 (exact, not w - 1)
  int64_t seed = 0;           // -1 = random (the chosen seed is returned)
  uint64_t first_index = 0;   // sample i draws the noise of sample first_index + i
  int batch = 0;              // samples per network batch; 0 = the preset's
  int skip_cache = 0;         // skip_dit's Skip-Cache every N calls; 0 = off
  std::vector<float> noise;   // optional x_T [n, C, H, W]
  int guidance_channels = 0;  // channels guidance combines; 0 = the network's, -1 = all inputs
  // Flow presets (docs/flow.md); 0 (cfg_interval: -1) = the preset's, else shift, atol, rtol > 0
  // and cfg_interval in [0, 1].
  double shift = 0, cfg_interval = -1, atol = 0, rtol = 0;
  int zero_init_steps = -1;   // euler / heun: zero-velocity steps at the start; < 0 = the preset's
  double cfg_power = -1;      // power-cos guidance (docs/mdt_diffusion.md) >= 0; -1 = the preset's
  bool keep_latents = false;  // fill GenerationResult::latents (latent models: before decoding)
  // After each network evaluation (done/total) and decode chunk; false cancels.
  std::function<bool(const char* phase, int done, int total)> progress;
  // Live preview (GenerateOptions::preview): the current x0 of the running mini-batch (B samples
  // from request index `first`) every preview_interval-th evaluation; Pipeline::preview_images
  // turns it into pixels.
  std::function<void(const float* x0, int B, int first, int done, int total)> preview;
  int preview_interval = 1;
};

struct GeneratedImage {
  Image image;
  uint64_t seed = 0, index = 0;
  int class_id = -1;
  std::string prompt;      // text models: this sample's prompt
  std::string parameters;  // the A1111 `parameters` text (metadata.hpp)
  std::string record;      // the `uvit-params` JSON
};

struct GenerationResult {
  std::vector<GeneratedImage> images;  // empty when nothing was decoded (PipelineOptions::decode)
  std::vector<float> latents;          // with keep_latents: the sampler's output [n, C, H, W]
  GenerateOptions resolved;            // sampler, steps and s actually used
  uint64_t seed = 0;
  int evaluations = 0;
  double sample_seconds = 0, decode_seconds = 0;
};

// How a front end names GenerationRequest's fields in its messages, given the member name
// ("steps", "guidance_w", "classes", ...): the C API "uvit_gen_params.steps", the server its JSON
// keys, the CLI its flags. Empty: the member names.
using FieldNames = std::function<std::string(const char* field)>;

// A request refused for one field: `field` is GenerationRequest's member name, what() the
// one-line message naming it as the front end does (the server answers 422 with its key).
struct RequestError : Error {
  RequestError(std::string f, const std::string& msg) : Error(msg), field(std::move(f)) {}
  std::string field;
};

// The range of a set value of the sampler options whose "unset" value lies outside it
// (guidance_w, cfg_scale, cfg_power, cfg_interval, shift, atol, rtol, skip_cache,
// zero_init_steps): the one table that check_request, the C API's `has` fields and the server's
// JSON fields check against.
struct FieldRange {
  const char* field;
  double lo, hi;
  bool lo_open;  // lo itself is out (> lo)
  bool integer;
};
const FieldRange& field_range(const char* field);
// Throws RequestError naming the field `name` ("NAME must be in [0, 1], got 1.5", "NAME must be
// > 0, got 0", "... must be an integer") when v (NaN included) is outside field's range.
void check_field(const char* field, double v, const std::string& name);

// Every check of a request that needs only its preset, each naming the field by `names`: n >= 1;
// steps, batch >= 0; seed >= -1; guidance channels >= -1; each sampler option that is set (not
// its "unset" value) within field_range, and the flow ones on a flow preset only; the sampler's
// name (canonical_sampler). Throws RequestError.
void check_request(const Config& cfg, const GenerationRequest& r, const FieldNames& names = {});

// A random seed in [0, 2^32) (seed -1 in a request, `uvit sample --seed -1`).
uint64_t random_seed();

// The sampler settings a request runs with on preset `cfg`: its sampler (canonical name), steps,
// guidance, seed (-1: a random one, drawn anew by each call), batch, Skip-Cache, first index and
// flow options over the preset's defaults (with_preset_defaults); not the noise or the progress.
// Throws RequestError (check_request) or uvit::Error (with_preset_defaults: guidance channels
// beyond the network's, a sampler the schedule lacks). The CLI, the server and the C API all
// resolve their requests here (docs/c_api.md, docs/serve.md).
GenerateOptions resolve_generation(const Config& cfg, const GenerationRequest& r,
                                   const FieldNames& names = {});

// A guidance-channels value as the CLI and the server take it: "all" (-1), N >= 1, or "" (0, the
// network's); a one-line error naming `field` otherwise.
int guidance_channels_from(const std::string& text, const char* field);

// LaVin-DiT answers in-context example frames (`uvit lavin-sample`), not a class, a prompt or
// nothing: the generic sampling paths would ask for an autoencoder or CLIP contexts it does not
// take. Fails naming the command to use.
void check_not_lavin(const Config& cfg);

// The class name table of a preset's dataset (class_names.hpp; empty when it has none).
const std::vector<ClassName>& class_table_of(const Config& cfg);
// A command-line --class value: a decimal id (returned as is, for the caller's range check), a
// WordNet id or a class name; an unknown name fails with the nearest names.
int class_from_option(const Config& cfg, const std::string& text);
// The one wording of "not a class" for the CLI and the server: `field` names where `text` came
// from (--class, prompt), `listing` where the classes are listed; the nearest names when any.
std::string unknown_class_message(const Config& cfg, const std::string& field,
                                  const std::string& text, const std::string& listing);

// What the metadata says about the model: the preset name, basenames and SHA-256 of the files.
struct ModelIdentity {
  std::string model, weights, weights_sha256, autoencoder, autoencoder_sha256;
};
// Hashes the files ("" paths are left out).
ModelIdentity model_identity(const Config& cfg, const std::string& weights,
                             const std::string& autoencoder);
// The metadata of one image: `resolved` holds the sampler, steps and s that ran
// (with_preset_defaults) and the seed; class models name the class (dataset's table, else the id)
// on the prompt line.
ImageParams image_params_for(const Config& cfg, const GenerateOptions& resolved,
                             const ModelIdentity& id, int class_id, const std::string& prompt,
                             uint64_t index, int width, int height);

// Why --preview on config cfg (its --set applied) has no cheap map, "" when it has one: decided by
// the config alone (the autoencoder's config, `autoencoder_config` as PipelineOptions'), so that
// the front ends refuse it before the network and the autoencoder load (docs/samplers.md
// "Preview").
std::string preview_unavailable(const Config& cfg, const std::string& autoencoder_config);

class Pipeline {
 public:
  explicit Pipeline(const PipelineOptions& o);
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  const Config& config() const { return cfg_; }
  ModelKind kind() const;
  int resolution() const;   // output image side (height) in pixels (after decoding)
  int width() const;        // output width: resolution() but for a non-square network input
  int channels() const;     // output image channels
  int num_classes() const;  // real classes (0 unless kind() == Class)
  std::string default_sampler() const;
  int default_steps() const;
  double default_guidance_w() const;
  bool can_encode_prompts() const { return clip_ != nullptr; }
  // Whether guidance applies: a text model, or a class model with a null class.
  bool can_guide() const;
  // The basenames and 10-hex SHA-256 prefixes recorded in metadata.
  const std::string& model_name() const { return id_.model; }
  const std::string& weights_name() const { return id_.weights; }
  const std::string& weights_sha256() const { return id_.weights_sha256; }
  const ModelIdentity& identity() const { return id_; }

  // Class id for a name, WordNet id or decimal id (class_names.hpp); -1 when unknown.
  int class_from_name(const std::string& name) const;
  std::string class_name(int id) const;  // "" when the dataset has no names

  // The metadata of one generated image (the grid writer adjusts it for a grid).
  ImageParams image_params(const GenerationResult& res, const GeneratedImage& im) const;

  // Throws the RequestError or uvit::Error generate() would throw for r (resolve_generation; a
  // Skip-Cache the network lacks; classes, prompts, contexts and the negative prompt against the
  // model) without waiting for a running generation, naming the fields by `names`: the C API and
  // the server call it first, so that their messages name their own fields.
  void check(const GenerationRequest& r, const FieldNames& names = {}) const;
  // One generation at a time (a second caller waits). Throws Cancelled or uvit::Error.
  GenerationResult generate(const GenerationRequest& r);
  // Whether preview_images has a cheap map for this model: a pixel model, or a latent one whose
  // autoencoder is Stable Diffusion's kl-f8 family (4 latent channels, RGB), loaded or not (the
  // map needs its config, not its weights). docs/samplers.md.
  bool can_preview() const;
  // One sentence on why can_preview() is false ("" when it is true), for the front ends' errors.
  std::string preview_unavailable() const;
  // The images of B x0 predictions [B, C, H, W] (a GenerationRequest::preview's): pixel models
  // as the final images (clamped to [-1, 1], to 8 bits); latent ones at latent resolution through
  // A1111's "Approximate cheap" linear map. Host arithmetic only, safe from any thread.
  std::vector<Image> preview_images(const float* x0, int B) const;
  // The loaded autoencoder (nullptr: pixel model, or decode = false).
  const Autoencoder* autoencoder() const { return ae_.get(); }
  // The loaded network (the ranks of a job compare its weights after loading).
  Network& network() { return *net_; }
  // The loaded CLIP text encoder and its tokenizer (nullptr: no --clip), compared by the ranks too.
  const ClipTextModel* clip_model() const { return clip_.get(); }
  const ClipTokenizer* clip_tokenizer() const { return tok_.get(); }
  // Stops the running generation at its next network evaluation; safe from any thread. A call
  // while nothing runs has no effect.
  void cancel() { cancel_.store(true); }

 private:
  Config cfg_;
  PipelineOptions opt_;
  std::unique_ptr<Backend> be_, ae_be_, clip_be_;
  std::unique_ptr<Network> net_;
  std::unique_ptr<Autoencoder> ae_;
  std::unique_ptr<ClipTokenizer> tok_;
  std::unique_ptr<ClipTextModel> clip_;
  ModelIdentity id_;
  std::string skip_cache_error_;  // why the network has no Skip-Cache ("" when it has one)
  // A latent model's preview map (preview.cpp): ae_'s config and statistics, or with no image
  // decoded those the config names; null for a pixel model.
  struct PreviewMap;
  std::shared_ptr<const PreviewMap> preview_map_;
  void make_preview_map();
  std::mutex run_;
  std::atomic<bool> cancel_{false};
};

// The PNG of a generated image, with its `parameters` and `uvit-params` text chunks.
std::vector<uint8_t> png_bytes(const GeneratedImage& im);

// A1111 sampler spellings ("DPM++ 2M", "Euler a", "DDIM", "k_euler") and our own names,
// case-insensitive, to the engine's names; "" stays "". A flow preset's (`flow`) names are its
// own samplers: "Euler" is the flow Euler ODE, "Euler a" its Euler-Maruyama SDE. Throws
// uvit::Error for an unknown name.
std::string canonical_sampler(const std::string& name, bool flow = false);

// The settings beyond sampler, steps and scale that change the samples, for PNG metadata and
// run manifests: a flow preset's shift, cfg interval and (dopri5) tolerances, and the guidance
// channels where they differ from the network's. Empty for an eps preset with its defaults.
std::map<std::string, std::string> extra_sampling_settings(const Config& cfg,
                                                           const GenerateOptions& g);

}  // namespace uvit
