// The C API (include/uvit.h) over uvit::Pipeline: argument checks, append-only struct copies,
// exceptions turned into a status and a thread-local message. Built into libuvit.so only.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <unordered_set>

#include "uvit.h"
#include "uvit/backend.hpp"
#include "uvit/error.hpp"
#include "uvit/log.hpp"
#include "uvit/network.hpp"
#include "uvit/pipeline.hpp"
#include "uvit/threads.hpp"

struct uvit_ctx {
  std::unique_ptr<uvit::Pipeline> pipe;
  std::string name, sha256, sampler;
};

namespace {

thread_local std::string t_error;
thread_local std::string t_class_name;

uvit_status set_error(uvit_status s, const std::string& msg) {
  t_error = msg;
  return s;
}

// The contexts uvit_ctx_create made and uvit_ctx_free has not freed: a call given another pointer
// (one already freed, or never a context) is refused with a message instead of reading freed
// memory, and a second uvit_ctx_free of the same pointer does nothing.
std::mutex g_live_mu;
std::unordered_set<const uvit_ctx*> g_live;

bool live(const uvit_ctx* ctx) {
  std::lock_guard<std::mutex> l(g_live_mu);
  return g_live.count(ctx) != 0;
}

// "" when ctx is a live context, else the message naming the function.
std::string bad_ctx(const char* fn, const uvit_ctx* ctx) {
  if (!ctx) return std::string(fn) + ": ctx is NULL";
  if (!live(ctx))
    return std::string(fn) +
           ": ctx is not a live context (freed by uvit_ctx_free, or not made by uvit_ctx_create)";
  return "";
}

// Runs fn, turning every exception into a status; `load_failure` is the status of a uvit::Error
// (UVIT_ERR_LOAD while loading, UVIT_ERR_INVALID_ARGUMENT for a request).
template <class F>
uvit_status guarded(uvit_status load_failure, F&& fn) {
  t_error.clear();
  try {
    fn();
    return UVIT_OK;
  } catch (const uvit::Cancelled& e) {
    return set_error(UVIT_ERR_CANCELLED, e.what());
  } catch (const uvit::Error& e) {
    // The memory check's refusal (docs/memory.md), at load or for a request: its own status.
    const bool oom = std::string(e.what()).rfind("out of memory", 0) == 0;
    return set_error(oom ? UVIT_ERR_OUT_OF_MEMORY : load_failure, e.what());
  } catch (const std::bad_alloc&) {
    return set_error(UVIT_ERR_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return set_error(UVIT_ERR_INTERNAL, e.what());
  } catch (...) {
    return set_error(UVIT_ERR_INTERNAL, "unknown exception");
  }
}

// Copies the caller's struct (struct_size bytes, its header's version) over our defaults: fields
// it does not know keep their defaults; bytes beyond ours must be zero (a newer header's fields
// left at their defaults), else the caller asks for something this library cannot do.
template <class T>
bool copy_params(const T* in, T& out, const char* what) {
  if (!in) return set_error(UVIT_ERR_INVALID_ARGUMENT, std::string(what) + " is NULL"), false;
  const size_t n = in->struct_size;
  if (n < sizeof(size_t) + sizeof(int)) {
    set_error(UVIT_ERR_INVALID_ARGUMENT,
              std::string(what) + ".struct_size is " + std::to_string(n) +
                  ": set it to sizeof the struct (the *_init functions do)");
    return false;
  }
  const auto* bytes = reinterpret_cast<const unsigned char*>(in);
  for (size_t i = sizeof(T); i < n; ++i)
    if (bytes[i] != 0) {
      set_error(UVIT_ERR_INVALID_ARGUMENT, std::string(what) + " sets fields this library (uvit " +
                                               uvit_version() + ") does not know: struct_size " +
                                               std::to_string(n) + " > " +
                                               std::to_string(sizeof(T)));
      return false;
    }
  std::memcpy(&out, in, std::min(n, sizeof(T)));
  out.struct_size = sizeof(T);
  return true;
}

std::string str(const char* s) { return s ? s : ""; }

// GenerationRequest's fields as uvit_gen_params names them (the same names), for the messages.
std::string field_name(const char* field) { return std::string("uvit_gen_params.") + field; }

char* dup(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (!p) throw std::bad_alloc();
  std::memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

uint8_t* dup_bytes(const uint8_t* d, size_t n) {
  auto* p = static_cast<uint8_t*>(std::malloc(n ? n : 1));
  if (!p) throw std::bad_alloc();
  if (n) std::memcpy(p, d, n);
  return p;
}

}  // namespace

extern "C" {

const char* uvit_status_string(uvit_status s) {
  switch (s) {
    case UVIT_OK:
      return "ok";
    case UVIT_ERR_INVALID_ARGUMENT:
      return "invalid argument";
    case UVIT_ERR_LOAD:
      return "load failed";
    case UVIT_ERR_OUT_OF_MEMORY:
      return "out of memory";
    case UVIT_ERR_CANCELLED:
      return "cancelled";
    case UVIT_ERR_INTERNAL:
      return "internal error";
  }
  return "unknown status";
}

const char* uvit_last_error(void) { return t_error.c_str(); }
const char* uvit_version(void) { return uvit::version_string(); }
const char* uvit_commit(void) { return uvit::commit_string(); }

void uvit_set_log_callback(uvit_log_callback cb, void* user) {
  if (!cb) return uvit::set_log_sink({});
  uvit::set_log_sink([cb, user](uvit::LogLevel l, const std::string& m) {
    cb(static_cast<uvit_log_level>(l), m.c_str(), user);
  });
}

void uvit_ctx_params_init(uvit_ctx_params* p) {
  if (!p) return;
  *p = uvit_ctx_params{};
  p->struct_size = sizeof *p;
  p->device = "cpu";
}

uvit_status uvit_ctx_create(const uvit_ctx_params* params, uvit_ctx** out) {
  t_error.clear();
  if (!out) return set_error(UVIT_ERR_INVALID_ARGUMENT, "uvit_ctx_create: out is NULL");
  *out = nullptr;
  uvit_ctx_params p;
  uvit_ctx_params_init(&p);
  if (!copy_params(params, p, "uvit_ctx_params")) return UVIT_ERR_INVALID_ARGUMENT;
  if (p.n_threads < 0)
    return set_error(UVIT_ERR_INVALID_ARGUMENT,
                     "uvit_ctx_params.n_threads must be >= 0, got " + std::to_string(p.n_threads));
  // A value no device takes is the caller's mistake, not a failed load: refused naming the field
  // (the loader's own words named neither the field nor NULL, and took precision "" as NULL).
  if (p.device && !uvit::known_device(p.device))
    return set_error(UVIT_ERR_INVALID_ARGUMENT, "uvit_ctx_params.device must be " +
                                                    uvit::device_choices('"') +
                                                    " (NULL: cpu), got \"" + p.device + "\"");
  if (p.precision && !uvit::known_precision(p.precision))
    return set_error(UVIT_ERR_INVALID_ARGUMENT,
                     "uvit_ctx_params.precision must be " + uvit::precision_choices("\"") +
                         " (NULL: the device's default), got \"" + p.precision + "\"");
  return guarded(UVIT_ERR_LOAD, [&] {
    uvit::PipelineOptions o;
    o.config = str(p.config);
    o.weights = str(p.weights);
    o.autoencoder = str(p.autoencoder);
    o.autoencoder_config = str(p.autoencoder_config);
    o.clip = str(p.clip);
    o.clip_config = str(p.clip_config);
    o.vocab = str(p.vocab);
    o.device = p.device ? p.device : "cpu";
    o.precision = str(p.precision);
    // Capped as the CLI's --threads and OMP_NUM_THREADS, the warning to the log callback.
    if (p.n_threads > 0)
      uvit::set_thread_count(p.n_threads,
                             "uvit_ctx_params.n_threads " + std::to_string(p.n_threads));
    else
      uvit::cap_environment_threads();
    auto ctx = std::make_unique<uvit_ctx>();
    try {
      ctx->pipe = std::make_unique<uvit::Pipeline>(o);
    } catch (const uvit::OtherPresetWeights& e) {  // said as a C program sets the config
      throw uvit::Error(e.said_as("uvit_ctx_params.config = \"" + e.preset + "\""));
    }
    ctx->name = ctx->pipe->model_name();
    ctx->sha256 = ctx->pipe->weights_sha256();
    ctx->sampler = ctx->pipe->default_sampler();
    std::lock_guard<std::mutex> l(g_live_mu);
    g_live.insert(ctx.get());
    *out = ctx.release();
  });
}

void uvit_ctx_free(uvit_ctx* ctx) {
  {
    std::lock_guard<std::mutex> l(g_live_mu);
    if (!g_live.erase(ctx)) return;  // NULL, or freed already
  }
  delete ctx;
}

uvit_status uvit_model_info_get(const uvit_ctx* ctx, uvit_model_info* info) {
  t_error.clear();
  if (const std::string e = bad_ctx("uvit_model_info_get", ctx); !e.empty())
    return set_error(UVIT_ERR_INVALID_ARGUMENT, e);
  if (!info) return set_error(UVIT_ERR_INVALID_ARGUMENT, "uvit_model_info_get: info is NULL");
  if (info->struct_size < sizeof(size_t) + sizeof(int))
    return set_error(UVIT_ERR_INVALID_ARGUMENT,
                     "uvit_model_info.struct_size must be sizeof(uvit_model_info)");
  return guarded(UVIT_ERR_INTERNAL, [&] {
    const uvit::Pipeline& p = *ctx->pipe;
    uvit_model_info m{};
    m.struct_size = std::min(info->struct_size, sizeof m);
    m.kind = static_cast<uvit_model_kind>(p.kind());
    m.resolution = p.resolution();
    m.channels = p.channels();
    m.num_classes = p.num_classes();
    m.name = ctx->name.c_str();
    m.weights_sha256 = ctx->sha256.c_str();
    m.default_sampler = ctx->sampler.c_str();
    m.default_steps = p.default_steps();
    m.default_guidance_w = float(p.default_guidance_w());
    std::memcpy(info, &m, m.struct_size);  // only the fields the caller's header has
  });
}

// Both say why in uvit_last_error() when they have no answer: a -1 passed on as a class would
// otherwise fail later as "class -1 is outside [0, 10)", naming neither the word nor the names.
int uvit_class_from_name(const uvit_ctx* ctx, const char* name) {
  t_error.clear();
  if (const std::string e = bad_ctx("uvit_class_from_name", ctx); !e.empty())
    return set_error(UVIT_ERR_INVALID_ARGUMENT, e), -1;
  if (!name) return set_error(UVIT_ERR_INVALID_ARGUMENT, "uvit_class_from_name: name is NULL"), -1;
  int id = -1;
  guarded(UVIT_ERR_INTERNAL, [&] {
    const uvit::Pipeline& p = *ctx->pipe;
    UVIT_CHECK(p.kind() == uvit::ModelKind::Class, "uvit_class_from_name: config ", p.model_name(),
               " is not class-conditional");
    id = p.class_from_name(name);
    if (id < 0)
      uvit::fail(
          uvit::unknown_class_message(p.config(), "uvit_class_from_name:", name,
                                      "uvit info --config " + p.model_name() + " --classes"));
  });
  return id;
}

const char* uvit_class_name(const uvit_ctx* ctx, int id) {
  t_error.clear();
  t_class_name.clear();
  if (const std::string e = bad_ctx("uvit_class_name", ctx); !e.empty())
    return set_error(UVIT_ERR_INVALID_ARGUMENT, e), "";
  guarded(UVIT_ERR_INTERNAL, [&] {
    const int k = ctx->pipe->num_classes();
    UVIT_CHECK(id >= 0 && id < k, "uvit_class_name: class ", id, " is outside [0, ", k, ")");
    t_class_name = ctx->pipe->class_name(id);
  });
  return t_class_name.c_str();
}

void uvit_gen_params_init(uvit_gen_params* p) {
  if (!p) return;
  *p = uvit_gen_params{};
  p->struct_size = sizeof *p;
  p->n = 1;
  p->guidance_w = -1;
}

uvit_status uvit_generate(uvit_ctx* ctx, const uvit_gen_params* params, uvit_image** images,
                          int* n_images) {
  t_error.clear();
  if (images) *images = nullptr;
  if (n_images) *n_images = 0;
  if (!images || !n_images)
    return set_error(UVIT_ERR_INVALID_ARGUMENT, "uvit_generate: images or n_images is NULL");
  if (const std::string e = bad_ctx("uvit_generate", ctx); !e.empty())
    return set_error(UVIT_ERR_INVALID_ARGUMENT, e);
  uvit_gen_params p;
  uvit_gen_params_init(&p);
  if (!copy_params(params, p, "uvit_gen_params")) return UVIT_ERR_INVALID_ARGUMENT;
  if ((p.n_classes > 0 && !p.classes) || (p.n_prompts > 0 && !p.prompts) || p.n_classes < 0 ||
      p.n_prompts < 0)
    return set_error(UVIT_ERR_INVALID_ARGUMENT,
                     "uvit_gen_params: classes/prompts is NULL or their count is negative");
  for (int i = 0; i < p.n_prompts; ++i)
    if (!p.prompts[i])
      return set_error(UVIT_ERR_INVALID_ARGUMENT,
                       "uvit_gen_params: prompts[" + std::to_string(i) + "] is NULL");
  uvit::adopt_thread_count();  // this thread may not be the one n_threads was set on
  uvit_image* out = nullptr;
  int made = 0;
  const uvit_status s = guarded(UVIT_ERR_INVALID_ARGUMENT, [&] {
    uvit::GenerationRequest r;
    r.n = p.n;
    r.classes.assign(p.classes, p.classes + p.n_classes);
    for (int i = 0; i < p.n_prompts; ++i) r.prompts.emplace_back(p.prompts[i]);
    r.negative_prompt = str(p.negative_prompt);
    r.sampler = str(p.sampler);
    r.steps = p.steps;
    r.guidance_w = p.guidance_w;
    r.seed = p.seed;
    r.first_index = p.first_index;
    r.batch = p.batch;
    // The sampler options: "unset" is 0 or a clear `has` bit; a set bit's value must lie in the
    // field's range (uvit::field_range), the rest is Pipeline::check's, naming our fields.
    const auto flagged = [&](uint32_t bit, double v, const char* field) {
      if (!(p.has & bit)) return -1.0;
      uvit::check_field(field, v, field_name(field));
      return v;
    };
    r.cfg_scale = flagged(UVIT_GEN_HAS_CFG_SCALE, p.cfg_scale, "cfg_scale");
    r.cfg_power = flagged(UVIT_GEN_HAS_CFG_POWER, p.cfg_power, "cfg_power");
    r.cfg_interval = flagged(UVIT_GEN_HAS_CFG_INTERVAL, p.cfg_interval, "cfg_interval");
    r.zero_init_steps =
        int(flagged(UVIT_GEN_HAS_ZERO_INIT_STEPS, p.zero_init_steps, "zero_init_steps"));
    UVIT_CHECK(!(p.has & ~uint32_t(15)), "uvit_gen_params.has sets unknown bits ", p.has);
    r.shift = p.shift;
    r.atol = p.atol;
    r.rtol = p.rtol;
    r.guidance_channels = p.guidance_channels;
    r.skip_cache = p.skip_cache;
    if (p.progress)
      r.progress = [&p](const char* phase, int done, int total) {
        // Decode chunks are not reported: the callback counts network evaluations.
        return std::strcmp(phase, "sample") != 0 || done == 0 ||
               p.progress(done, total, p.progress_user);
      };
    UVIT_CHECK(p.preview_interval >= 0, "uvit_gen_params.preview_interval must be >= 0, got ",
               p.preview_interval);
    if (p.preview) {
      UVIT_CHECK(ctx->pipe->can_preview(), "uvit_gen_params.preview: config ",
                 ctx->pipe->model_name(), ": ", ctx->pipe->preview_unavailable());
      r.preview_interval = std::max(1, p.preview_interval);
      r.preview = [&p, &r, ctx](const float* x0, int B, int first, int done, int total) {
        const std::vector<uvit::Image> ims = ctx->pipe->preview_images(x0, B);
        std::vector<uvit_image> v(ims.size());
        for (size_t i = 0; i < ims.size(); ++i) {
          v[i].width = ims[i].w;
          v[i].height = ims[i].h;
          v[i].channels = ims[i].c;
          v[i].pixels = const_cast<uint8_t*>(ims[i].px.data());
          v[i].seed = p.seed;
          v[i].index = p.first_index + uint64_t(first) + i;
          v[i].class_id =
              r.classes.empty() ? -1 : r.classes[(size_t(first) + i) % r.classes.size()];
        }
        p.preview(v.data(), int(v.size()), first, done, total, p.preview_user);
      };
    }
    ctx->pipe->check(r, field_name);
    const uvit::GenerationResult res = ctx->pipe->generate(r);
    const size_t n = res.images.size();
    out = static_cast<uvit_image*>(std::calloc(n ? n : 1, sizeof(uvit_image)));
    if (!out) throw std::bad_alloc();
    for (const uvit::GeneratedImage& g : res.images) {
      uvit_image& o = out[made++];  // counted first, so a failure below frees what was made
      o.width = g.image.w;
      o.height = g.image.h;
      o.channels = g.image.c;
      o.seed = int64_t(g.seed);
      o.index = g.index;
      o.class_id = g.class_id;
      o.pixels = dup_bytes(g.image.px.data(), g.image.px.size());
      const std::vector<uint8_t> png = uvit::png_bytes(g);
      o.png = dup_bytes(png.data(), png.size());
      o.png_size = png.size();
      o.parameters = dup(g.parameters);
      o.record = dup(g.record);
    }
  });
  if (s != UVIT_OK) {
    uvit_images_free(out, made);
    if (s == UVIT_ERR_OUT_OF_MEMORY)  // the sizes to change, as the CLI names its options
      t_error += "; with uvit_gen_params n " + std::to_string(p.n) +
                 (p.batch > 0 ? ", batch " + std::to_string(p.batch) : "") +
                 ": give smaller values";
    return s;
  }
  *images = out;
  *n_images = made;
  return UVIT_OK;
}

void uvit_images_free(uvit_image* images, int n) {
  if (!images) return;
  for (int i = 0; i < n; ++i) {
    std::free(images[i].pixels);
    std::free(images[i].png);
    std::free(images[i].parameters);
    std::free(images[i].record);
  }
  std::free(images);
}

void uvit_cancel(uvit_ctx* ctx) {
  if (live(ctx)) ctx->pipe->cancel();
}

uvit_status uvit_png_read_parameters(const uint8_t* png, size_t size, char** parameters,
                                     char** record) {
  t_error.clear();
  if (parameters) *parameters = nullptr;
  if (record) *record = nullptr;
  if (!png) return set_error(UVIT_ERR_INVALID_ARGUMENT, "uvit_png_read_parameters: png is NULL");
  return guarded(UVIT_ERR_INVALID_ARGUMENT, [&] {
    const auto text = uvit::decode_png_text(png, size, "PNG");
    const auto get = [&](const char* k) {
      const auto it = text.find(k);
      return it == text.end() ? std::string() : it->second;
    };
    char* a = parameters ? dup(get("parameters")) : nullptr;
    try {
      if (record) *record = dup(get("uvit-params"));
    } catch (...) {
      std::free(a);
      throw;
    }
    if (parameters) *parameters = a;
  });
}

void uvit_free(void* p) { std::free(p); }

}  // extern "C"
