/* The C API under a memory limit (tests/e2e/oom_limit.sh sets UVIT_TEST_MEM_LIMIT): a request whose
 * batch cannot fit fails with UVIT_ERR_OUT_OF_MEMORY and the memory check's one line, and the
 * same context then serves a request that fits. Usage: oom_capi CONFIG WEIGHTS BIG_N; prints the
 * refusal's message on success. */
#include <stdio.h>
#include <string.h>

#include "uvit.h"

int main(int argc, char** argv) {
  if (argc != 4) return fprintf(stderr, "usage: oom_capi CONFIG WEIGHTS BIG_N\n"), 2;
  uvit_ctx_params cp;
  uvit_ctx_params_init(&cp);
  cp.config = argv[1];
  cp.weights = argv[2];
  uvit_ctx* ctx = NULL;
  if (uvit_ctx_create(&cp, &ctx) != UVIT_OK)
    return fprintf(stderr, "load: %s\n", uvit_last_error()), 1;
  const int cls = 1;
  uvit_gen_params gp;
  uvit_gen_params_init(&gp);
  gp.classes = &cls;
  gp.n_classes = 1;
  gp.steps = 2;
  gp.seed = 7;
  int big = 0;
  sscanf(argv[3], "%d", &big);
  gp.n = big;
  gp.batch = big;
  uvit_image* im = NULL;
  int n = 0;
  uvit_status s = uvit_generate(ctx, &gp, &im, &n);
  if (s != UVIT_ERR_OUT_OF_MEMORY || im != NULL || n != 0 ||
      strncmp(uvit_last_error(), "out of memory: the buffers need ", 32) != 0 ||
      !strstr(uvit_last_error(), "; with uvit_gen_params n "))
    return fprintf(stderr, "big request: status %d (%s): %s\n", (int)s, uvit_status_string(s),
                   uvit_last_error()),
           1;
  printf("%s\n", uvit_last_error());
  gp.n = 2;
  gp.batch = 0;
  s = uvit_generate(ctx, &gp, &im, &n);
  if (s != UVIT_OK || n != 2)
    return fprintf(stderr, "then a request that fits: status %d: %s\n", (int)s, uvit_last_error()),
           1;
  uvit_images_free(im, n);
  uvit_ctx_free(ctx);
  return 0;
}
