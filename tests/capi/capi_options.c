/* The C API's sampler options (uvit_gen_params.has .. skip_cache), compiled as C99: one image
 * (class 3, seed 5) per case of tests/capi/sampling_parity.sh, its pixels written to OUT/CASE.raw
 * for the script to compare with `uvit sample` and the server; then bad values, each refused
 * with a message naming the field, and a struct from before the fields (struct_size up to `has`)
 * that ignores what lies beyond it. Usage: capi_options CONFIG.json WEIGHTS OUT_DIR */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "uvit.h"

static const int kClass = 3;

static void base(uvit_gen_params* p) {
  uvit_gen_params_init(p);
  p->classes = &kClass;
  p->n_classes = 1;
  p->seed = 5;
}

/* Generates one image and writes its pixels to DIR/NAME.raw. */
static void run_case(uvit_ctx* ctx, const uvit_gen_params* p, const char* dir, const char* name) {
  uvit_image* im = NULL;
  int n = 0;
  const uvit_status st = uvit_generate(ctx, p, &im, &n);
  CHECK(st == UVIT_OK && n == 1, "case %s: %s", name, uvit_last_error());
  if (st == UVIT_OK && n == 1) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.raw", dir, name);
    FILE* f = fopen(path, "wb");
    const size_t bytes = (size_t)im[0].width * im[0].height * im[0].channels;
    CHECK(f && fwrite(im[0].pixels, 1, bytes, f) == bytes && fclose(f) == 0, "writing %s", path);
  }
  uvit_images_free(im, n);
}

/* A request that must fail with UVIT_ERR_INVALID_ARGUMENT and a message containing `want`. */
static void expect_refused(uvit_ctx* ctx, const uvit_gen_params* p, const char* want) {
  uvit_image* im = NULL;
  int n = 0;
  const uvit_status st = uvit_generate(ctx, p, &im, &n);
  CHECK(st == UVIT_ERR_INVALID_ARGUMENT && im == NULL && strstr(uvit_last_error(), want),
        "want '%s': status %d '%s'", want, (int)st, uvit_last_error());
  uvit_images_free(im, n);
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: capi_options CONFIG.json WEIGHTS OUT_DIR\n");
    return 2;
  }
  uvit_ctx_params cp;
  uvit_ctx_params_init(&cp);
  cp.config = argv[1];
  cp.weights = argv[2];
  uvit_ctx* ctx = NULL;
  if (uvit_ctx_create(&cp, &ctx) != UVIT_OK) {
    fprintf(stderr, "FAIL: create: %s\n", uvit_last_error());
    return 1;
  }
  const char* out = argv[3];
  uvit_gen_params p;

  /* The cases; tests/capi/sampling_parity.sh gives `uvit sample` the same flags. */
  base(&p);
  run_case(ctx, &p, out, "default");
  base(&p);
  p.shift = 2.0; /* --shift 2 */
  run_case(ctx, &p, out, "shift");
  base(&p);
  p.has = UVIT_GEN_HAS_CFG_INTERVAL;
  p.cfg_interval = 0.5; /* --cfg-interval 0.5 */
  run_case(ctx, &p, out, "cfg_interval");
  base(&p);
  p.has = UVIT_GEN_HAS_CFG_INTERVAL;
  p.cfg_interval = 0.0; /* --cfg-interval 0: a zero that is a value */
  run_case(ctx, &p, out, "cfg_interval0");
  base(&p);
  p.has = UVIT_GEN_HAS_CFG_POWER;
  p.cfg_power = 2.0; /* --cfg-power 2 */
  run_case(ctx, &p, out, "cfg_power");
  base(&p);
  p.sampler = "dopri5";
  p.atol = 1e-4;
  p.rtol = 1e-2; /* --sampler dopri5 --atol 1e-4 --rtol 1e-2 */
  run_case(ctx, &p, out, "dopri5");
  base(&p);
  p.has = UVIT_GEN_HAS_CFG_SCALE;
  p.cfg_scale = 0.3; /* --cfg-scale 0.3: s exactly, not 1.3 - 1 */
  run_case(ctx, &p, out, "cfg_scale");
  base(&p);
  p.guidance_channels = -1; /* --guidance-channels all */
  run_case(ctx, &p, out, "guidance_channels");
  base(&p);
  p.has = UVIT_GEN_HAS_ZERO_INIT_STEPS;
  p.zero_init_steps = 2; /* --zero-init-steps 2 */
  run_case(ctx, &p, out, "zero_init_steps");

  /* A caller compiled before the fields: struct_size ends before `has`, so what lies beyond it
   * (here a shift) is not read and the image is the default one. */
  base(&p);
  p.struct_size = offsetof(uvit_gen_params, has);
  p.shift = 2.0;
  run_case(ctx, &p, out, "old_struct");

  /* Bad values: the fields a case sets over base(), and what the message must say. */
  static const struct {
    uvit_gen_params set;
    const char* want;
  } bad[] = {
      {{.shift = -1}, "shift must be > 0"},
      {{.atol = -1e-3}, "atol must be > 0"},
      {{.rtol = NAN}, "rtol must be > 0"},
      {{.has = UVIT_GEN_HAS_CFG_INTERVAL, .cfg_interval = 1.5},
       "uvit_gen_params.cfg_interval must be in [0, 1], got 1.5"},
      {{.has = UVIT_GEN_HAS_CFG_INTERVAL, .cfg_interval = -1},
       "uvit_gen_params.cfg_interval must be in [0, 1], got -1"},
      {{.has = UVIT_GEN_HAS_CFG_POWER, .cfg_power = -2},
       "uvit_gen_params.cfg_power must be in [0, 1000], got -2"},
      {{.has = UVIT_GEN_HAS_CFG_SCALE, .cfg_scale = INFINITY}, "cfg_scale"},
      {{.has = 0x10u}, "uvit_gen_params.has sets unknown bits 16"},
      {{.has = UVIT_GEN_HAS_ZERO_INIT_STEPS, .zero_init_steps = -1},
       "uvit_gen_params.zero_init_steps must be in [0, 1000], got -1"},
      {{.guidance_channels = 2}, "guidance channels 2 exceed the 1 output channels"},
      {{.guidance_channels = -2}, "guidance_channels must be >= 1"},
      {{.skip_cache = 2}, "uvit_gen_params.skip_cache: network"},
      {{.skip_cache = 2}, "has no Skip-Cache"},
      {{.skip_cache = -1}, "uvit_gen_params.skip_cache must be in [1, 1048576], got -1"},
      {{.shift = -1}, "uvit_gen_params.shift must be > 0, got -1"},
      {{.has = UVIT_GEN_HAS_CFG_SCALE, .cfg_scale = 150}, "uvit_gen_params.cfg_scale must be in [0, 99]"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
    base(&p);
    p.has = bad[i].set.has;
    p.cfg_scale = bad[i].set.cfg_scale;
    p.cfg_power = bad[i].set.cfg_power;
    p.shift = bad[i].set.shift;
    p.cfg_interval = bad[i].set.cfg_interval;
    p.atol = bad[i].set.atol;
    p.rtol = bad[i].set.rtol;
    p.guidance_channels = bad[i].set.guidance_channels;
    p.skip_cache = bad[i].set.skip_cache;
    p.zero_init_steps = bad[i].set.zero_init_steps;
    expect_refused(ctx, &p, bad[i].want);
  }

  uvit_ctx_free(ctx);
  if (failures)
    fprintf(stderr, "%d failure(s)\n", failures);
  else
    printf("capi_options: all checks passed\n");
  return failures ? 1 : 0;
}
