/* uvit.h: the C API of uvit.cpp (C99). Load a model once, generate images with progress and
 * cancellation, get them as pixels and PNG bytes with their generation parameters.
 *
 * Conventions (docs/c_api.md):
 * - Every function that can fail returns a uvit_status; uvit_last_error() then holds a one-line
 *   message for the calling thread. No C++ exception crosses this boundary.
 * - Parameter structs start with struct_size = sizeof(the struct) as the caller compiled it. They
 *   only ever grow at the end, so a program built against an older header keeps working; fill
 *   them with the *_init function first.
 * - Memory the library returns is freed by the library (uvit_images_free, uvit_free).
 * - One context runs one generation at a time (a second caller waits); uvit_cancel may be called
 *   from any thread. The log callback is the only process-wide setting.
 */
#ifndef UVIT_H
#define UVIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UVIT_VERSION_MAJOR 0
#define UVIT_VERSION_MINOR 1
#define UVIT_VERSION_PATCH 0

#if defined(_WIN32)
#if defined(UVIT_BUILD)
#define UVIT_API __declspec(dllexport)
#else
#define UVIT_API __declspec(dllimport)
#endif
#elif defined(__GNUC__)
#define UVIT_API __attribute__((visibility("default")))
#else
#define UVIT_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum uvit_status {
  UVIT_OK = 0,
  UVIT_ERR_INVALID_ARGUMENT = 1, /* a NULL pointer, a bad struct_size, an unknown class, ... */
  UVIT_ERR_LOAD = 2,             /* a config, weights or encoder file could not be loaded */
  UVIT_ERR_OUT_OF_MEMORY = 3,
  UVIT_ERR_CANCELLED = 4, /* uvit_cancel or the progress callback stopped the generation */
  UVIT_ERR_INTERNAL = 5
} uvit_status;

/* "ok", "invalid argument", ... (static storage). */
UVIT_API const char* uvit_status_string(uvit_status status);
/* The message of the last failed call on this thread ("" if it succeeded). Valid until the
 * thread's next call into the library. */
UVIT_API const char* uvit_last_error(void);

/* "0.1.0" and the git commit the library was built from ("abc1234", "unknown"). */
UVIT_API const char* uvit_version(void);
UVIT_API const char* uvit_commit(void);

typedef enum uvit_log_level {
  UVIT_LOG_DEBUG = 0,
  UVIT_LOG_INFO = 1,
  UVIT_LOG_WARN = 2,
  UVIT_LOG_ERROR = 3
} uvit_log_level;
/* Receives the library's log lines (no trailing newline). NULL removes it; without one the
 * library prints nothing. Process-wide; called from the thread that logs. */
typedef void (*uvit_log_callback)(uvit_log_level level, const char* message, void* user);
UVIT_API void uvit_set_log_callback(uvit_log_callback callback, void* user);

/* ---- context ---------------------------------------------------------------------------- */

typedef struct uvit_ctx uvit_ctx;

typedef struct uvit_ctx_params {
  size_t struct_size;
  const char* config;             /* preset name, JSON file or training run folder (required) */
  const char* weights;            /* .safetensors or .pth (required) */
  const char* autoencoder;        /* latent presets: autoencoder_kl.pth */
  const char* autoencoder_config; /* NULL: Stable Diffusion kl-f8 */
  const char* clip;               /* text presets: CLIPTextModel weights */
  const char* clip_config;        /* NULL: ViT-L/14 */
  const char* vocab;              /* NULL: the default CLIP vocabulary */
  const char* device;             /* "cpu" (default) or "cuda" */
  const char* precision;          /* NULL: the device's default; "fp32", "bf16", "tf32" */
  int n_threads;                  /* CPU threads, process-wide; 0 = all cores */
} uvit_ctx_params;

UVIT_API void uvit_ctx_params_init(uvit_ctx_params* params);
UVIT_API uvit_status uvit_ctx_create(const uvit_ctx_params* params, uvit_ctx** out);
/* NULL is fine, and so is a context freed already (nothing happens). A call given a freed context
 * fails with UVIT_ERR_INVALID_ARGUMENT ("ctx is not a live context"). */
UVIT_API void uvit_ctx_free(uvit_ctx* ctx);

typedef enum uvit_model_kind {
  UVIT_MODEL_UNCONDITIONAL = 0,
  UVIT_MODEL_CLASS = 1, /* class-conditional: uvit_gen_params.classes */
  UVIT_MODEL_TEXT = 2   /* text-to-image: uvit_gen_params.prompts */
} uvit_model_kind;

typedef struct uvit_model_info {
  size_t struct_size;
  uvit_model_kind kind;
  int resolution;             /* output image side in pixels */
  int channels;               /* output image channels (1 gray, 3 RGB) */
  int num_classes;            /* class models: ids are 0 .. num_classes-1 */
  const char* name;           /* the preset name */
  const char* weights_sha256; /* hex; A1111's "Model hash" is its first 10 characters */
  const char* default_sampler;
  int default_steps;
  float default_guidance_w; /* w = s + 1; 1 = no guidance */
} uvit_model_info;

/* Fills info (set info->struct_size first); the strings live as long as the context. */
UVIT_API uvit_status uvit_model_info_get(const uvit_ctx* ctx, uvit_model_info* info);
/* A class id for a decimal id, a WordNet id or a class name (case-insensitive); -1 if unknown,
 * uvit_last_error() then saying why (the nearest names, or that the model has no classes). */
UVIT_API int uvit_class_from_name(const uvit_ctx* ctx, const char* name);
/* The display name of class `id` ("" when the dataset has no names, or id is not a class: then
 * uvit_last_error() says so); valid until the thread's next call. */
UVIT_API const char* uvit_class_name(const uvit_ctx* ctx, int id);

/* ---- generation --------------------------------------------------------------------------- */

/* After each network evaluation: done of total. Return false to cancel. */
typedef bool (*uvit_progress_callback)(int done, int total, void* user);

typedef struct uvit_image uvit_image;
/* A live preview (docs/c_api.md): the model's current guess of the running batch's final images
 * (x0), n_images of them from image `first` of the request, after network evaluation done of
 * total (total -1: not known in advance). Only width, height, channels, pixels, seed (as
 * requested: -1 when random), index and class_id are set; the images are valid during the call
 * only. */
typedef void (*uvit_preview_callback)(const uvit_image* images, int n_images, int first, int done,
                                      int total, void* user);

typedef struct uvit_gen_params {
  size_t struct_size;
  int n;              /* images (default 1) */
  const int* classes; /* class models: image i gets classes[i % n_classes] */
  int n_classes;
  const char* const* prompts; /* text models: image i gets prompts[i % n_prompts] */
  int n_prompts;
  const char* negative_prompt; /* text models: the prompt guidance steers away from */
  const char* sampler;         /* NULL: the preset's; A1111 spellings accepted ("DPM++ 2M") */
  int steps;                   /* 0: the preset's */
  float guidance_w;            /* w = s + 1 (1 = off); < 0: the preset's */
  int64_t seed;                /* -1: random (reported in each uvit_image) */
  uint64_t first_index;        /* image i draws the noise of index first_index + i */
  int batch;                   /* images per network batch; 0: the preset's */
  uvit_progress_callback progress;
  void* progress_user;
  /* Appended: the sampler options of `uvit sample` (docs/c_api.md). Each left at 0 means the
   * preset's value, so a struct that leaves them 0 also works with a library built before them;
   * a field whose 0 is itself a value counts only when its UVIT_GEN_HAS_* bit is in `has`. */
  uint32_t has;     /* UVIT_GEN_HAS_* bits */
  double cfg_scale; /* U-ViT's s exactly (--cfg-scale; w = s + 1), >= 0; used when guidance_w
                       < 0 and has UVIT_GEN_HAS_CFG_SCALE */
  double cfg_power; /* power-cos guidance power (--cfg-power), >= 0; has UVIT_GEN_HAS_CFG_POWER */
  double shift;     /* flow presets: time shift (--shift), > 0 */
  double cfg_interval;   /* flow presets: no guidance while t < t0 (--cfg-interval), t0 in [0, 1];
                            has UVIT_GEN_HAS_CFG_INTERVAL */
  double atol, rtol;     /* flow presets, dopri5: tolerances (--atol, --rtol), > 0 */
  int guidance_channels; /* channels guidance combines (--guidance-channels): N >= 1, -1 all */
  int skip_cache;        /* skip_dit: the whole network every N calls (--skip-cache), N >= 1 */
  int zero_init_steps;   /* flow presets, euler/heun: the first N steps at velocity 0
                            (--zero-init-steps, SVG's cfg_star), N >= 0; has
                            UVIT_GEN_HAS_ZERO_INIT_STEPS */
  /* Appended: a live preview. NULL (the default): none, and nothing is computed for it. Pixel
   * models, and latent ones with Stable Diffusion's 4-channel autoencoder (a cheap linear map at
   * latent resolution); others fail with UVIT_ERR_INVALID_ARGUMENT. */
  uvit_preview_callback preview;
  void* preview_user;
  int preview_interval; /* every N network evaluations of a batch, and its last; 0: every one */
} uvit_gen_params;

/* uvit_gen_params.has: the fields whose zero is a value. */
#define UVIT_GEN_HAS_CFG_SCALE 0x1u
#define UVIT_GEN_HAS_CFG_POWER 0x2u
#define UVIT_GEN_HAS_CFG_INTERVAL 0x4u
#define UVIT_GEN_HAS_ZERO_INIT_STEPS 0x8u

UVIT_API void uvit_gen_params_init(uvit_gen_params* params);

struct uvit_image {
  int width, height, channels;
  uint8_t* pixels; /* HWC, row-major */
  uint8_t* png;    /* the PNG file, with the parameters and uvit-params text chunks */
  size_t png_size;
  int64_t seed;
  uint64_t index;   /* (seed, index) regenerate this image alone */
  int class_id;     /* -1 unless class-conditional */
  char* parameters; /* A1111 "parameters" text */
  char* record;     /* "uvit-params" JSON */
};

/* Generates params->n images into *images (free with uvit_images_free). On failure *images is
 * NULL and *n_images 0. */
UVIT_API uvit_status uvit_generate(uvit_ctx* ctx, const uvit_gen_params* params,
                                   uvit_image** images, int* n_images);
UVIT_API void uvit_images_free(uvit_image* images, int n_images);
/* Stops the context's running generation at its next network evaluation (uvit_generate then
 * returns UVIT_ERR_CANCELLED). Safe from any thread; no effect when nothing runs. */
UVIT_API void uvit_cancel(uvit_ctx* ctx);

/* Reads the parameters / uvit-params text chunks of PNG bytes (either may be NULL when not
 * wanted; a missing chunk gives ""). Free the strings with uvit_free. */
UVIT_API uvit_status uvit_png_read_parameters(const uint8_t* png, size_t size, char** parameters,
                                              char** record);
UVIT_API void uvit_free(void* p);

#ifdef __cplusplus
}
#endif
#endif /* UVIT_H */
