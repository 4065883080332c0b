// The generation pipeline (include/uvit/pipeline.hpp): loads once, then wraps generate() with
// request resolution, cancellation, decoding and metadata. docs/c_api.md.
#include "uvit/pipeline.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdlib>

#include "core/mem_limit.hpp"
#include "diffusion/sampling_plan.hpp"
#include "uvit/ascii.hpp"
#include "uvit/autoencoder.hpp"
#include "uvit/backend.hpp"
#include "uvit/class_names.hpp"
#include "uvit/clip.hpp"
#include "uvit/flow.hpp"
#include "uvit/log.hpp"
#include "uvit/metadata.hpp"
#include "uvit/network.hpp"
#include "uvit/quote.hpp"

namespace uvit {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int guidance_channels_from(const std::string& text, const char* field) {
  if (text.empty()) return 0;
  if (text == "all") return -1;
  char* end = nullptr;
  const long n = std::strtol(text.c_str(), &end, 10);
  UVIT_CHECK(*end == '\0' && n >= 1 && n <= 1 << 20, field,
             " must be 'all' or a positive integer, got '", text, "'");
  return int(n);
}

const std::vector<ClassName>& class_table_of(const Config& c) {
  static const std::vector<ClassName> none;
  const auto d = c.json.find("dataset");
  if (d == c.json.end() || !d->is_object()) return none;
  const auto n = d->find("name");
  return n != d->end() && n->is_string() ? class_table(n->get<std::string>()) : none;
}

void check_not_lavin(const Config& cfg) {
  UVIT_CHECK(cfg.spec.name != "lavin_dit", "config ", cfg.config_name,
             " is LaVin-DiT: it answers in-context example frames; sample it with uvit "
             "lavin-sample (docs/lavin_dit.md)");
}

std::string unknown_class_message(const Config& cfg, const std::string& field,
                                  const std::string& text, const std::string& listing) {
  const auto& t = class_table_of(cfg);
  std::string near;
  for (const auto& s : near_class_names(t, text)) near += (near.empty() ? "" : ", ") + s;
  const int k = real_classes(cfg);
  return cat(field, " '", clipped(text), "' is not a class of ", cfg.config_name,
             t.empty() ? cat(" (no class names: give an id 0..", k - 1, ")")
             : near.empty()
                 ? cat(" (give an id 0..", k - 1, " or a class name: ", listing, " lists them)")
                 : cat("; did you mean: ", near, " (", listing, " lists them)"));
}

int class_from_option(const Config& cfg, const std::string& text) {
  if (!text.empty() && text.size() < 10 &&
      text.find_first_not_of("0123456789") == std::string::npos)
    return std::stoi(text);
  const int k = find_class(class_table_of(cfg), real_classes(cfg), text);
  if (k >= 0) return k;
  fail(unknown_class_message(cfg, "--class", text,
                             cat("uvit info --config ", cfg.config_name, " --classes")));
}

const char* model_kind_name(ModelKind k) {
  return k == ModelKind::Class ? "class" : k == ModelKind::Text ? "t2i" : "uncond";
}

std::string canonical_sampler(const std::string& name, bool flow) {
  if (name.empty()) return name;
  const std::string k = ascii_lower(name);
  if (flow) {  // docs/flow.md: the flow samplers, and A1111's names for the closest of them
    static const std::vector<std::pair<std::string, std::string>> flow_aliases = {
        {"k_euler", "euler"},
        {"euler a", "euler_maruyama"},
        {"k_euler_a", "euler_maruyama"},
        {"k_heun", "heun"},
        {"euler-maruyama", "euler_maruyama"}};
    for (const auto& [a, ours] : flow_aliases)
      if (k == a) return ours;
    check_flow_sampler_name(k);
    return k;
  }
  // A1111's display names and k-diffusion aliases -> ours (the closest solver of each family).
  static const std::vector<std::pair<std::string, std::string>> aliases = {
      {"euler", "euler-ode"},
      {"k_euler", "euler-ode"},
      {"euler a", "euler-maruyama"},
      {"k_euler_a", "euler-maruyama"},
      {"dpm++ 2m", "dpm-solver++2m"},
      {"k_dpmpp_2m", "dpm-solver++2m"},
      {"dpm++ 2m karras", "dpm-solver++2m"},
      {"dpm++ 2s", "dpm-solver++"},
      {"dpm-solver++ 2s", "dpm-solver++"},
      {"dpm solver", "dpm-solver"},
      {"dpm-solver", "dpm-solver"},
      {"ddim", "ddim"},
      {"ddpm", "ddpm"},
      {"euler_maruyama", "euler-maruyama"},
      {"euler_maruyama_sde", "euler-maruyama"},
      {"euler_maruyama_ode", "euler-ode"},
      {"dpm_solver", "dpm-solver"},
  };
  for (const auto& [a, ours] : aliases)
    if (k == a) return ours;
  check_sampler_name(k);
  return k;
}

Pipeline::Pipeline(const PipelineOptions& o) : opt_(o) {
  const auto t0 = std::chrono::steady_clock::now();
  UVIT_CHECK(!o.config.empty(), "no config: give a preset name, JSON file or run folder");
  UVIT_CHECK(!o.weights.empty(), "no weights: give a .safetensors or .pth file");
  cfg_ = load_config(o.config);
  for (const auto& a : o.set) apply_override(cfg_, a);
  check_not_lavin(cfg_);
  const bool latent = cfg_.json.contains("z_shape");
  UVIT_CHECK(!latent || !o.decode || !o.autoencoder.empty(), "config ", cfg_.config_name,
             " is a latent model: give the autoencoder (autoencoder_kl.pth) to decode its samples");
  UVIT_CHECK(cfg_.spec.text_conditional() || o.clip.empty(), "config ", cfg_.config_name,
             " is not text-to-image: a CLIP text encoder does not apply");
  const std::string enc_prec = encoder_precision(o.device, o.precision == "fp32" ? "fp32" : "");
  if (latent && o.decode) {
    ae_ = std::make_unique<Autoencoder>(load_preset_autoencoder(
        cfg_.json, o.autoencoder, o.autoencoder_config, o.latent_stats, o.device, enc_prec));
  }
  make_preview_map();
  if (!o.clip.empty()) {
    tok_ = std::make_unique<ClipTokenizer>(ClipTokenizer::load(clip_vocab_path(o.vocab)));
    const ClipTextConfig cc = ClipTextConfig::load(o.clip_config);
    clip_be_ = make_encoder_backend(o.device, enc_prec);
    clip_ = std::make_unique<ClipTextModel>(cc, *clip_be_);
    clip_->load_file(o.clip);
    UVIT_CHECK(size_t(cc.hidden_size) * 77 == cfg_.spec.context_numel(), o.clip,
               ": CLIP contexts are [77, ", cc.hidden_size, "], config ", cfg_.config_name,
               " expects [", cfg_.spec.context_tokens, ", ", cfg_.spec.context_dim, "]");
  }
  be_ = make_backend(o.device, o.precision);
  {  // a network the machine cannot hold is refused before its file is read (docs/memory.md)
    MemPlan plan;
    net_ = make_network(cfg_, *be_);
    plan.check();
  }
  net_->load_file(o.weights);
  try {  // whether the network has a Skip-Cache, for check() (generate() starts it anew)
    net_->set_skip_cache(2);
    net_->set_skip_cache(0);
  } catch (const Error& e) {  // "--skip-cache: network ... has no Skip-Cache": check names it
    const std::string m = e.what(), flag = "--skip-cache: ";
    skip_cache_error_ = m.rfind(flag, 0) == 0 ? m.substr(flag.size()) : m;
  }
  if (o.identify) {
    id_ = model_identity(cfg_, o.weights, ae_ ? o.autoencoder : "");
  } else {
    id_.model = cfg_.config_name;
  }
  log(LogLevel::Info, cat("loaded ", id_.model, " (", base_name(o.weights),
                          o.identify ? ", " + id_.weights_sha256.substr(0, 10) : "", ") on ",
                          o.device, " in ", seconds_since(t0), " s"));
}

Pipeline::~Pipeline() = default;

ModelKind Pipeline::kind() const {
  if (cfg_.spec.text_conditional()) return ModelKind::Text;
  return cfg_.spec.class_conditional() ? ModelKind::Class : ModelKind::Unconditional;
}

int Pipeline::resolution() const {
  return ae_ ? cfg_.spec.img_size * ae_->config().downsample_factor() : cfg_.spec.img_size;
}

int Pipeline::width() const {
  return ae_ ? cfg_.spec.width() * ae_->config().downsample_factor() : cfg_.spec.width();
}

int Pipeline::channels() const { return ae_ ? ae_->config().out_ch : cfg_.spec.in_chans; }

int Pipeline::num_classes() const { return kind() == ModelKind::Class ? real_classes(cfg_) : 0; }

std::string Pipeline::default_sampler() const { return with_preset_defaults(cfg_, {}).sampler; }
int Pipeline::default_steps() const { return with_preset_defaults(cfg_, {}).steps; }
double Pipeline::default_guidance_w() const { return with_preset_defaults(cfg_, {}).cfg_scale + 1; }

int Pipeline::class_from_name(const std::string& name) const {
  return find_class(class_table_of(cfg_), num_classes(), name);
}

std::string Pipeline::class_name(int id) const {
  return class_display_name(class_table_of(cfg_), id);
}

GenerateOptions resolve_generation(const Config& cfg, const GenerationRequest& r,
                                   const FieldNames& names) {
  // The sampler settings' "unset" values are exact (0, or -1 where 0 is a value): anything else
  // outside a field's range is refused there, naming the field, rather than silently becoming the
  // preset's value. with_preset_defaults checks what remains (guidance channels against the
  // network, the sampler against the schedule).
  check_request(cfg, r, names);
  GenerateOptions g;
  g.sampler = canonical_sampler(r.sampler, is_flow(cfg));
  g.steps = r.steps;
  g.cfg_scale = r.guidance_w < 0 ? r.cfg_scale : r.guidance_w - 1;
  g.mini_batch = r.batch;
  g.skip_cache = r.skip_cache;
  g.first_index = r.first_index;
  g.guidance_channels = r.guidance_channels == -1 ? cfg.spec.in_chans : r.guidance_channels;
  g.shift = r.shift;
  g.cfg_interval = r.cfg_interval;
  g.zero_init_steps = r.zero_init_steps;
  g.cfg_power = r.cfg_power;
  g.atol = r.atol;
  g.rtol = r.rtol;
  g.seed = r.seed < 0 ? random_seed() : uint64_t(r.seed);
  return with_preset_defaults(cfg, g);
}

bool Pipeline::can_guide() const {
  return kind() == ModelKind::Text || (kind() == ModelKind::Class && null_class(cfg_) >= 0);
}

void Pipeline::check(const GenerationRequest& r, const FieldNames& names) const {
  const auto name = [&](const char* f) { return names ? names(f) : std::string(f); };
  const auto need = [&](bool ok, const char* f, const auto&... msg) {
    if (!ok) throw RequestError(f, cat(name(f), ": ", msg...));
  };
  resolve_generation(cfg_, r, names);
  need(r.skip_cache <= 1 || skip_cache_error_.empty(), "skip_cache", skip_cache_error_);
  const std::string& model = cfg_.config_name;
  if (kind() == ModelKind::Class) {
    need(!r.classes.empty(), "classes", "config ", model,
         " is class-conditional: give the classes");
    for (int c : r.classes)
      need(c >= 0 && c < num_classes(), "classes", "class ", c, " is outside [0, ", num_classes(),
           ")");
  } else {
    need(r.classes.empty(), "classes", "config ", model,
         " is not class-conditional: classes do not apply");
  }
  need(r.negative_prompt.empty() || kind() == ModelKind::Text, "negative_prompt",
       "a negative prompt applies to text-to-image models only");
  if (kind() == ModelKind::Text) {
    if (!r.prompts.empty()) {
      need(clip_ != nullptr, "prompts", "config ", model,
           " is text-to-image: prompts need the CLIP text encoder weights");
      need(r.contexts.empty(), "prompts", "give prompts or contexts, not both");
    } else {
      need(!r.contexts.empty(), "prompts", "config ", model,
           " is text-to-image: give prompts (with CLIP weights) or contexts");
      need(r.negative_prompt.empty(), "negative_prompt",
           "a negative prompt needs the CLIP text encoder");
    }
  } else {
    need(r.prompts.empty() && r.contexts.empty(), "prompts", "config ", model,
         " is not text-to-image: prompts do not apply");
  }
}

GenerationResult Pipeline::generate(const GenerationRequest& r) {
  std::lock_guard<std::mutex> lock(run_);
  cancel_.store(false);
  const NetSpec& nc = cfg_.spec;
  const int n = r.n;
  check(r);
  GenerateOptions g = resolve_generation(cfg_, r);
  g.noise = r.noise;
  // Held with generate()'s result (its plan counts them): the latents kept, the decoded samples
  // (floats) and the images (bytes).
  const bool images = opt_.decode || !cfg_.json.contains("z_shape");
  const size_t px = images ? size_t(n) * channels() * resolution() * width() : 0;
  g.host_bytes = (r.keep_latents ? size_t(n) * nc.in_numel() * 4 : 0) + (ae_ ? px * 4 : 0) + px;
  // generate()'s memory check and buffers, made now: a huge n is refused before the n labels,
  // prompts and contexts below are built (and before the prompts are encoded). generate() samples
  // in these buffers (g has the preset's defaults, as it checks).
  std::unique_ptr<SamplingBuffers> buffers = planned_sampling_buffers(*net_, cfg_, g, n);

  std::vector<int> labels;
  for (int i = 0; i < n && !r.classes.empty(); ++i)
    labels.push_back(r.classes[size_t(i) % r.classes.size()]);
  std::vector<float> ctx = r.contexts, null_ctx = r.null_context;
  std::vector<std::string> prompts;  // per sample
  if (!r.prompts.empty()) {          // a text model with CLIP (check)
    for (int i = 0; i < n; ++i) prompts.push_back(r.prompts[size_t(i) % r.prompts.size()]);
    std::vector<float> enc = clip_encode_prompts(*tok_, *clip_, r.prompts);
    null_ctx = clip_encode_prompts(*tok_, *clip_, {r.negative_prompt});
    const size_t per = null_ctx.size();
    ctx.resize(size_t(n) * per);
    for (int i = 0; i < n; ++i)
      std::copy_n(enc.begin() + ptrdiff_t((size_t(i) % r.prompts.size()) * per), per,
                  ctx.begin() + ptrdiff_t(size_t(i) * per));
  }

  const auto check_stop = [&](const char* phase, int done, int total) {
    if (cancel_.load() || (r.progress && !r.progress(phase, done, total))) throw Cancelled();
  };
  GenerationResult res;
  res.seed = g.seed;
  auto t0 = std::chrono::steady_clock::now();
  g.progress = [&](int done, int total) {
    res.evaluations = done;
    check_stop("sample", done, total);
  };
  g.preview = r.preview;
  g.preview_interval = r.preview_interval;
  check_stop("sample", 0, 0);
  std::vector<float> x = uvit::generate(*buffers, *net_, cfg_, g, n, labels, ctx, null_ctx);
  buffers.reset();  // the sampler's mini-batch, not needed to decode
  res.sample_seconds = seconds_since(t0);
  log(LogLevel::Info, cat("sampling completed, taking ", res.sample_seconds, " s (",
                          res.evaluations, " network evaluations, seed ", g.seed, ")"));
  g.progress = nullptr;
  g.preview = nullptr;
  g.noise.clear();
  res.resolved = g;
  if (r.keep_latents) res.latents = x;
  if (!images) return res;
  int c = nc.in_chans, s = nc.img_size, w = nc.width();  // s: the height
  if (ae_) {
    t0 = std::chrono::steady_clock::now();
    check_stop("decode", 0, n);
    x = decode_latents(*ae_, x, n, c, s, w, 4, [&](int64_t done, int64_t total) {
      check_stop("decode", int(done), int(total));
    });
    c = ae_->config().out_ch;
    s *= ae_->config().downsample_factor();
    w *= ae_->config().downsample_factor();
    res.decode_seconds = seconds_since(t0);
    log(LogLevel::Info, cat("decode completed, taking ", res.decode_seconds, " s"));
  }
  const size_t per = size_t(c) * s * w;
  for (int i = 0; i < n; ++i) {
    GeneratedImage im;
    im.image = to_image(x.data() + size_t(i) * per, c, s, w);
    im.seed = g.seed;
    im.index = g.first_index + uint64_t(i);
    if (!labels.empty()) im.class_id = labels[size_t(i)];
    if (!prompts.empty()) im.prompt = prompts[size_t(i)];
    ImageParams p = image_params(res, im);
    p.negative_prompt = r.negative_prompt;
    im.parameters = a1111_parameters(p);
    im.record = params_record(p);
    res.images.push_back(std::move(im));
  }
  return res;
}

ImageParams Pipeline::image_params(const GenerationResult& res, const GeneratedImage& im) const {
  ImageParams p = image_params_for(cfg_, res.resolved, id_, im.class_id, im.prompt, im.index,
                                   im.image.w, im.image.h);
  p.seed = im.seed;
  return p;
}

ModelIdentity model_identity(const Config& cfg, const std::string& weights,
                             const std::string& autoencoder) {
  ModelIdentity id;
  id.model = cfg.config_name;
  if (!weights.empty()) {
    id.weights = base_name(weights);
    id.weights_sha256 = file_sha256(weights);
  }
  if (!autoencoder.empty()) {
    id.autoencoder = base_name(autoencoder);
    id.autoencoder_sha256 = file_sha256(autoencoder);
  }
  return id;
}

std::map<std::string, std::string> extra_sampling_settings(const Config& cfg,
                                                           const GenerateOptions& g) {
  std::map<std::string, std::string> m;
  const NetSpec& ns = cfg.spec;
  if (g.guidance_channels != (ns.guidance_channels > 0 ? ns.guidance_channels : ns.in_chans))
    m["guidance_channels"] = std::to_string(g.guidance_channels);
  if (g.cfg_power > 0) m["cfg_power"] = cat(g.cfg_power);
  if (g.skip_cache > 1) m["skip_cache"] = std::to_string(g.skip_cache);  // 1: every call in full
  if (!is_flow(cfg)) return m;
  m["shift"] = cat(g.shift);
  m["cfg_interval"] = cat(g.cfg_interval);
  if (g.zero_init_steps > 0) m["zero_init_steps"] = cat(g.zero_init_steps);
  if (g.sampler == "dopri5") m["atol"] = cat(g.atol), m["rtol"] = cat(g.rtol);
  return m;
}

ImageParams image_params_for(const Config& cfg, const GenerateOptions& resolved,
                             const ModelIdentity& id, int class_id, const std::string& prompt,
                             uint64_t index, int width, int height) {
  ImageParams p;
  if (class_id >= 0) {
    const std::string name = class_display_name(class_table_of(cfg), class_id);
    p.prompt = name.empty() ? std::to_string(class_id) : name;
    p.class_id = class_id;
  } else {
    p.prompt = prompt;
  }
  p.sampler = resolved.sampler;
  p.steps = resolved.steps;
  p.guidance_w = resolved.cfg_scale + 1;
  p.seed = resolved.seed;
  p.index = index;
  p.width = width;
  p.height = height;
  p.model = id.model;
  p.weights = id.weights;
  p.weights_sha256 = id.weights_sha256;
  p.autoencoder = id.autoencoder;
  p.autoencoder_sha256 = id.autoencoder_sha256;
  p.schedule = cfg.json.value("schedule", std::string("continuous_vp"));
  p.extra = extra_sampling_settings(cfg, resolved);
  return p;
}

std::vector<uint8_t> png_bytes(const GeneratedImage& im) {
  return encode_png(im.image.px.data(), im.image.w, im.image.h, im.image.c,
                    {{"parameters", im.parameters}, {"uvit-params", im.record}});
}

}  // namespace uvit
