/* The C API, compiled as C99: load a tiny class-conditional model, read its info and class names,
 * generate (images, PNG bytes, metadata, (seed, index) reproducibility, progress), cancel from
 * the progress callback and from another thread, generate from three threads at once, and check
 * the status and error text of bad calls. Usage: test_capi CONFIG.json WEIGHTS; with a third
 * argument env-threads, the cap of OMP_NUM_THREADS alone (environment_threads). */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "uvit.h"

static int log_lines = 0, saw_sampling_line = 0;
static char last_warning[512];
static void on_log(uvit_log_level level, const char* msg, void* user) {
  (void)user;
  ++log_lines;
  if (level == UVIT_LOG_INFO && strstr(msg, "sampling completed")) saw_sampling_line = 1;
  if (level == UVIT_LOG_WARN) snprintf(last_warning, sizeof last_warning, "%s", msg);
}

struct progress_state {
  int calls, last_done, last_total, monotonic, stop_at;
};
static bool on_progress(int done, int total, void* user) {
  struct progress_state* s = (struct progress_state*)user;
  if (done <= s->last_done) s->monotonic = 0;
  s->calls++;
  s->last_done = done;
  s->last_total = total;
  return s->stop_at == 0 || done < s->stop_at;
}

/* The live preview: every call's images, first index, evaluation and a pixel sum. */
struct preview_state {
  int calls, bad, images, firsts[8], dones[8];
};
static void on_preview(const uvit_image* im, int n, int first, int done, int total, void* user) {
  struct preview_state* s = (struct preview_state*)user;
  if (s->calls < 8) s->firsts[s->calls] = first, s->dones[s->calls] = done;
  s->calls++;
  s->images += n;
  for (int i = 0; i < n; ++i)
    if (im[i].width != 28 || im[i].height != 28 || im[i].channels != 1 || !im[i].pixels ||
        im[i].png != NULL || im[i].index != (uint64_t)(first + i) || total != 8)
      s->bad++;
}

/* Cancel from another thread: the callback signals at the first evaluation and waits (at most
 * 10 s) until the other thread has called uvit_cancel; the next evaluation then stops. */
struct cancel_state {
  uvit_ctx* ctx;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int started, cancelled, calls;
};
static bool wait_for_cancel(int done, int total, void* user) {
  struct cancel_state* s = (struct cancel_state*)user;
  (void)done;
  (void)total;
  pthread_mutex_lock(&s->mu);
  s->calls++;
  s->started = 1;
  pthread_cond_broadcast(&s->cv);
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 10;
  while (!s->cancelled)
    if (pthread_cond_timedwait(&s->cv, &s->mu, &until) != 0) break;
  pthread_mutex_unlock(&s->mu);
  return true;
}
static void* canceller(void* user) {
  struct cancel_state* s = (struct cancel_state*)user;
  pthread_mutex_lock(&s->mu);
  while (!s->started) pthread_cond_wait(&s->cv, &s->mu);
  uvit_cancel(s->ctx);
  s->cancelled = 1;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/* Generation from several threads at once (docs/c_api.md "Threads"): two calls on one context (the
 * second waits for the first) and a third thread that loads its own context and generates on it
 * meanwhile. Each thread keeps its own status, error text and images. */
struct gen_job {
  uvit_ctx* ctx; /* NULL: create one from cp, generate, free it */
  const uvit_ctx_params* cp;
  uvit_gen_params gp;
  uvit_image* im;
  int n;
  uvit_status st;
  char error[512];
};
static void* generate_job(void* user) {
  struct gen_job* j = (struct gen_job*)user;
  uvit_ctx* own = NULL;
  uvit_ctx* ctx = j->ctx;
  j->st = UVIT_OK;
  if (!ctx) {
    j->st = uvit_ctx_create(j->cp, &own);
    ctx = own;
  }
  if (j->st == UVIT_OK) j->st = uvit_generate(ctx, &j->gp, &j->im, &j->n);
  snprintf(j->error, sizeof j->error, "%s", uvit_last_error());
  uvit_ctx_free(own);
  return NULL;
}

/* n_threads 0 keeps the environment's count, capped as the CLI caps it: capi_test.sh runs this
 * with OMP_NUM_THREADS=100000 (libgomp reads it at load). Missing weights: the load fails after
 * the cap, before any parallel region would start 100000 threads. Before, the count was taken
 * uncapped, with no warning. */
static int environment_threads(const char* config) {
  uvit_set_log_callback(on_log, NULL);
  uvit_ctx_params cp;
  uvit_ctx_params_init(&cp);
  cp.config = config;
  cp.weights = "/nonexistent/w.safetensors";
  uvit_ctx* ctx = NULL;
  last_warning[0] = '\0';
  const uvit_status st = uvit_ctx_create(&cp, &ctx);
  CHECK(st == UVIT_ERR_LOAD && ctx == NULL, "status %d", (int)st);
  CHECK(strstr(last_warning,
               "OMP_NUM_THREADS=100000 asks for 100000 threads, more than 4 for each of the ") ==
                last_warning &&
            strstr(last_warning, " CPUs this process may run on; using "),
        "OMP_NUM_THREADS=100000, n_threads 0: warning '%s'", last_warning);
  if (!failures) printf("test_capi env-threads: ok: %s\n", last_warning);
  return failures ? 1 : 0;
}

/* The threads of this process now (/proc/self/task), from the progress callback: the generating
 * thread's OpenMP team is there. */
static int count_tasks(void) {
  DIR* d = opendir("/proc/self/task");
  int n = 0;
  for (struct dirent* e; d && (e = readdir(d));) n += e->d_name[0] != '.';
  if (d) closedir(d);
  return n;
}
static bool on_progress_tasks(int done, int total, void* user) {
  (void)done, (void)total;
  int* most = (int*)user;
  const int n = count_tasks();
  if (n > *most) *most = n;
  return true;
}
struct tasks_job {
  uvit_ctx* ctx;
  int most;
  uvit_status st;
};
static void* tasks_generate(void* user) {
  struct tasks_job* j = (struct tasks_job*)user;
  uvit_gen_params gp;
  uvit_gen_params_init(&gp);
  static const int classes[1] = {7};
  gp.n = 2;
  gp.classes = classes;
  gp.n_classes = 1;
  gp.progress = on_progress_tasks;
  gp.progress_user = &j->most;
  uvit_image* im = NULL;
  int n = 0;
  j->st = uvit_generate(j->ctx, &gp, &im, &n);
  if (j->st != UVIT_OK) fprintf(stderr, "generate: %s\n", uvit_last_error());
  uvit_images_free(im, n);
  return NULL;
}

/* n_threads reaches every thread that generates, not only the one that made the context:
 * libgomp's count is per thread for threads it did not start, and a new one takes the
 * environment's. capi_test.sh runs this with OMP_NUM_THREADS=6 and n_threads 2: a generation on
 * the making thread holds its team of 2; one on another thread adds that thread and its own team
 * of 2, not of 6 (before, 4 threads more). */
static int threads_elsewhere(const char* config, const char* weights) {
  uvit_ctx_params cp;
  uvit_ctx_params_init(&cp);
  cp.config = config;
  cp.weights = weights;
  cp.n_threads = 2;
  uvit_ctx* ctx = NULL;
  if (uvit_ctx_create(&cp, &ctx) != UVIT_OK) {
    fprintf(stderr, "FAIL create: %s\n", uvit_last_error());
    return 1;
  }
  struct tasks_job here = {ctx, 0, UVIT_OK}, there = {ctx, 0, UVIT_OK};
  tasks_generate(&here);
  pthread_t th;
  pthread_create(&th, NULL, tasks_generate, &there);
  pthread_join(th, NULL);
  uvit_ctx_free(ctx);
  CHECK(here.st == UVIT_OK && there.st == UVIT_OK, "generate: %d %d", (int)here.st, (int)there.st);
  CHECK(here.most >= 2, "no team of 2 on the making thread (%d threads)", here.most);
  CHECK(there.most <= here.most + 2,
        "another thread's generation: %d threads, %d on the making one", there.most, here.most);
  if (!failures)
    printf("test_capi threads-elsewhere: ok: %d threads generating here, %d on another thread\n",
           here.most, there.most);
  return failures ? 1 : 0;
}

int main(int argc, char** argv) {
  if (argc == 4 && strcmp(argv[3], "env-threads") == 0) return environment_threads(argv[1]);
  if (argc == 4 && strcmp(argv[3], "threads-elsewhere") == 0)
    return threads_elsewhere(argv[1], argv[2]);
  if (argc != 3) {
    fprintf(stderr, "usage: test_capi CONFIG.json WEIGHTS [env-threads]\n");
    return 2;
  }
  CHECK(strlen(uvit_version()) > 0 && strlen(uvit_commit()) > 0, "version '%s' commit '%s'",
        uvit_version(), uvit_commit());
  CHECK(strcmp(uvit_status_string(UVIT_ERR_CANCELLED), "cancelled") == 0, "status string");
  uvit_set_log_callback(on_log, NULL);

  uvit_ctx_params cp;
  uvit_ctx_params_init(&cp);
  uvit_ctx* ctx = NULL;
  /* Missing weights: a load error naming the file, no context. */
  cp.config = argv[1];
  cp.weights = "/nonexistent/w.safetensors";
  uvit_status st = uvit_ctx_create(&cp, &ctx);
  CHECK(st == UVIT_ERR_LOAD && ctx == NULL, "status %d", (int)st);
  CHECK(strstr(uvit_last_error(), "/nonexistent/w.safetensors") != NULL, "error '%s'",
        uvit_last_error());
  /* Another preset's weights: the load's error names the preset whose file it is and how to take
   * it as a C program does, not with the CLI's --config (capi_test.sh puts CONFIG.json among the
   * presets as tiny_e2e). */
  cp.config = "fmnist_uvit_tiny";
  cp.weights = argv[2];
  st = uvit_ctx_create(&cp, &ctx);
  CHECK(st == UVIT_ERR_LOAD && ctx == NULL &&
            strstr(uvit_last_error(),
                   "; the file holds preset tiny_e2e's weights (every tensor's name and shape): "
                   "uvit_ctx_params.config = \"tiny_e2e\" takes it") &&
            !strstr(uvit_last_error(), "--config"),
        "status %d '%s'", (int)st, uvit_last_error());
  cp.config = argv[1];
  /* struct_size 0 is refused. */
  cp.struct_size = 0;
  st = uvit_ctx_create(&cp, &ctx);
  CHECK(st == UVIT_ERR_INVALID_ARGUMENT && strstr(uvit_last_error(), "struct_size"), "'%s'",
        uvit_last_error());
  cp.struct_size = sizeof cp;
  /* Far more threads than CPUs: capped at the CPUs with one warning through the log callback, as
   * the CLI's --threads (libgomp starts every thread asked for; 100000 crashed it). */
  cp.n_threads = 100000;
  last_warning[0] = '\0';
  st = uvit_ctx_create(&cp, &ctx);
  CHECK(st == UVIT_OK && ctx != NULL, "create: %s", uvit_last_error());
  CHECK(strstr(last_warning,
               "uvit_ctx_params.n_threads 100000 asks for 100000 threads, more "
               "than 4 for each of the ") == last_warning &&
            strstr(last_warning, " CPUs this process may run on; using "),
        "n_threads 100000: warning '%s'", last_warning);
  cp.n_threads = 0;
  if (!ctx) return 1;
  CHECK(uvit_last_error()[0] == '\0', "error after success: '%s'", uvit_last_error());

  uvit_model_info info;
  memset(&info, 0, sizeof info);
  info.struct_size = sizeof info;
  CHECK(uvit_model_info_get(ctx, &info) == UVIT_OK, "%s", uvit_last_error());
  CHECK(info.kind == UVIT_MODEL_CLASS && info.resolution == 28 && info.channels == 1 &&
            info.num_classes == 10,
        "kind %d res %d ch %d classes %d", (int)info.kind, info.resolution, info.channels,
        info.num_classes);
  CHECK(strcmp(info.default_sampler, "dpm-solver") == 0 && info.default_steps == 4 &&
            info.default_guidance_w == 2.0f,
        "defaults %s %d %g", info.default_sampler, info.default_steps, info.default_guidance_w);
  CHECK(strlen(info.weights_sha256) == 64, "sha256 '%s'", info.weights_sha256);
  CHECK(uvit_class_from_name(ctx, "Sneaker") == 7 && uvit_class_from_name(ctx, "ankle BOOT") == 9 &&
            uvit_class_from_name(ctx, "3") == 3 && uvit_class_from_name(ctx, "10") == -1 &&
            uvit_class_from_name(ctx, "zebra") == -1,
        "class lookup");
  CHECK(strcmp(uvit_class_name(ctx, 7), "Sneaker") == 0, "name '%s'", uvit_class_name(ctx, 7));

  /* Three images, classes 7, 2, 7, seed 5. */
  const int classes[2] = {7, 2};
  uvit_gen_params gp;
  uvit_gen_params_init(&gp);
  struct progress_state ps = {0, 0, 0, 1, 0};
  gp.n = 3;
  gp.classes = classes;
  gp.n_classes = 2;
  gp.seed = 5;
  gp.batch = 2;
  gp.progress = on_progress;
  gp.progress_user = &ps;
  uvit_image* im = NULL;
  int n = 0;
  st = uvit_generate(ctx, &gp, &im, &n);
  CHECK(st == UVIT_OK && n == 3, "generate: %s", uvit_last_error());
  CHECK(ps.calls > 0 && ps.last_done == ps.last_total && ps.monotonic, "progress %d %d/%d",
        ps.calls, ps.last_done, ps.last_total);
  CHECK(saw_sampling_line, "no 'sampling completed' log line (%d lines)", log_lines);
  if (st == UVIT_OK && n == 3) {
    for (int i = 0; i < 3; ++i) {
      CHECK(im[i].width == 28 && im[i].height == 28 && im[i].channels == 1, "size");
      CHECK(im[i].seed == 5 && im[i].index == (uint64_t)i && im[i].class_id == classes[i % 2],
            "image %d: seed %lld index %llu class %d", i, (long long)im[i].seed,
            (unsigned long long)im[i].index, im[i].class_id);
      CHECK(im[i].png_size > 8 && memcmp(im[i].png, "\x89PNG\r\n\x1a\n", 8) == 0, "png");
    }
    const char* want0 =
        "Sneaker\nSteps: 4, Sampler: dpm-solver, CFG scale: 2, UViT scale: 1, Seed: 5, Index: 0, "
        "Size: 28x28, Model hash: ";
    CHECK(strncmp(im[0].parameters, want0, strlen(want0)) == 0, "parameters '%s'",
          im[0].parameters);
    CHECK(strstr(im[0].parameters, info.weights_sha256) == NULL &&
              strncmp(im[0].parameters + strlen(want0), info.weights_sha256, 10) == 0,
          "model hash: '%s'", im[0].parameters);
    CHECK(strstr(im[1].parameters, "Pullover\n") == im[1].parameters, "'%s'", im[1].parameters);
    CHECK(strstr(im[0].record, "\"schema\":\"uvit.image.params/v1\"") != NULL, "'%s'",
          im[0].record);
    /* Basenames only: the weights' folder appears in neither text. */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", argv[2]);
    if (strrchr(dir, '/')) *strrchr(dir, '/') = '\0';
    CHECK(strstr(im[0].parameters, dir) == NULL && strstr(im[0].record, dir) == NULL,
          "a path in the metadata: '%s' '%s'", im[0].parameters, im[0].record);
    /* The PNG carries the same text. */
    char *params = NULL, *record = NULL;
    CHECK(uvit_png_read_parameters(im[2].png, im[2].png_size, &params, &record) == UVIT_OK, "%s",
          uvit_last_error());
    CHECK(params && strcmp(params, im[2].parameters) == 0, "png parameters '%s'", params);
    CHECK(record && strcmp(record, im[2].record) == 0, "png record '%s'", record);
    uvit_free(params);
    uvit_free(record);
    CHECK(uvit_png_read_parameters((const uint8_t*)"nope", 4, &params, NULL) ==
                  UVIT_ERR_INVALID_ARGUMENT &&
              strstr(uvit_last_error(), "not a PNG"),
          "'%s'", uvit_last_error());

    /* (seed 5, index 2) alone, in a batch of one, gives image 2 again, bit for bit. */
    uvit_gen_params one;
    uvit_gen_params_init(&one);
    one.classes = &classes[0];
    one.n_classes = 1;
    one.seed = 5;
    one.first_index = 2;
    uvit_image* again = NULL;
    int n1 = 0;
    st = uvit_generate(ctx, &one, &again, &n1);
    CHECK(st == UVIT_OK && n1 == 1, "%s", uvit_last_error());
    if (n1 == 1)
      CHECK(memcmp(again[0].pixels, im[2].pixels, 28 * 28) == 0 && again[0].index == 2,
            "(seed, index) does not reproduce image 2");
    uvit_images_free(again, n1);

    /* The same request with a preview every 2 evaluations: 4 evaluations in each of the batches
     * [0, 2) and [2, 3), so 2 calls each (at 2 and 4 of the batch); the same images. */
    struct preview_state pv;
    memset(&pv, 0, sizeof pv);
    gp.progress = NULL;
    gp.preview = on_preview;
    gp.preview_user = &pv;
    gp.preview_interval = 2;
    st = uvit_generate(ctx, &gp, &again, &n1);
    CHECK(st == UVIT_OK && n1 == 3, "%s", uvit_last_error());
    CHECK(pv.calls == 4 && pv.images == 6 && pv.bad == 0 && pv.firsts[0] == 0 &&
              pv.firsts[1] == 0 && pv.firsts[2] == 2 && pv.firsts[3] == 2 && pv.dones[0] == 2 &&
              pv.dones[1] == 4 && pv.dones[2] == 6 && pv.dones[3] == 8,
          "preview: %d calls, %d images, %d bad, firsts %d %d %d %d, dones %d %d %d %d", pv.calls,
          pv.images, pv.bad, pv.firsts[0], pv.firsts[1], pv.firsts[2], pv.firsts[3], pv.dones[0],
          pv.dones[1], pv.dones[2], pv.dones[3]);
    for (int i = 0; i < n1 && n1 == 3; ++i)
      CHECK(memcmp(again[i].pixels, im[i].pixels, 28 * 28) == 0, "image %d changed by a preview",
            i);
    uvit_images_free(again, n1);
    /* An older caller's struct ends before the preview fields: whatever lies beyond is unread. */
    memset(&pv, 0, sizeof pv);
    gp.struct_size = offsetof(uvit_gen_params, preview);
    st = uvit_generate(ctx, &gp, &again, &n1);
    CHECK(st == UVIT_OK && n1 == 3 && pv.calls == 0, "older struct: %s, %d preview calls",
          uvit_last_error(), pv.calls);
    uvit_images_free(again, n1);
    gp.struct_size = sizeof gp;
    gp.preview_interval = -1;
    st = uvit_generate(ctx, &gp, &again, &n1);
    CHECK(st == UVIT_ERR_INVALID_ARGUMENT && strstr(uvit_last_error(), "preview_interval"), "'%s'",
          uvit_last_error());
    gp.preview = NULL;
    gp.preview_interval = 0;

    /* Three threads at once (struct gen_job): each gets images 0-2 of seed 5 again, bit for bit. */
    struct gen_job jobs[3];
    pthread_t threads[3];
    memset(jobs, 0, sizeof jobs);
    for (int t = 0; t < 3; ++t) {
      jobs[t].ctx = t < 2 ? ctx : NULL;
      jobs[t].cp = &cp;
      jobs[t].gp = gp;
      pthread_create(&threads[t], NULL, generate_job, &jobs[t]);
    }
    for (int t = 0; t < 3; ++t) {
      pthread_join(threads[t], NULL);
      CHECK(jobs[t].st == UVIT_OK && jobs[t].n == 3, "thread %d: status %d, %d images: %s", t,
            (int)jobs[t].st, jobs[t].n, jobs[t].error);
      for (int i = 0; i < jobs[t].n && jobs[t].n == 3; ++i)
        CHECK(memcmp(jobs[t].im[i].pixels, im[i].pixels, 28 * 28) == 0 &&
                  strcmp(jobs[t].im[i].parameters, im[i].parameters) == 0,
              "thread %d: image %d differs from the one-thread generation", t, i);
      uvit_images_free(jobs[t].im, jobs[t].n);
    }
    gp.progress = on_progress;
  }
  uvit_images_free(im, n);

  /* Cancel from the callback at the second evaluation. */
  struct progress_state stop = {0, 0, 0, 1, 2};
  gp.progress_user = &stop;
  im = (uvit_image*)&stop; /* must be reset to NULL */
  n = 7;
  st = uvit_generate(ctx, &gp, &im, &n);
  CHECK(st == UVIT_ERR_CANCELLED && im == NULL && n == 0, "status %d n %d", (int)st, n);
  CHECK(strcmp(uvit_last_error(), "generation cancelled") == 0, "'%s'", uvit_last_error());
  CHECK(stop.calls == 2, "callback ran %d times after cancelling", stop.calls);

  /* Cancel from another thread. */
  struct cancel_state cs;
  memset(&cs, 0, sizeof cs);
  cs.ctx = ctx;
  pthread_mutex_init(&cs.mu, NULL);
  pthread_cond_init(&cs.cv, NULL);
  pthread_t th;
  pthread_create(&th, NULL, canceller, &cs);
  gp.progress = wait_for_cancel;
  gp.progress_user = &cs;
  st = uvit_generate(ctx, &gp, &im, &n);
  pthread_join(th, NULL);
  CHECK(st == UVIT_ERR_CANCELLED && cs.calls == 1, "status %d after %d calls", (int)st, cs.calls);

  /* Still usable; seed -1 picks a seed and reports it. */
  gp.progress = NULL;
  gp.n = 1;
  gp.seed = -1;
  st = uvit_generate(ctx, &gp, &im, &n);
  CHECK(st == UVIT_OK && n == 1, "after cancel: %s", uvit_last_error());
  if (n == 1) {
    char want[64];
    snprintf(want, sizeof want, "Seed: %lld,", (long long)im[0].seed);
    CHECK(im[0].seed >= 0 && im[0].seed <= 0xffffffffLL && strstr(im[0].parameters, want),
          "seed %lld: '%s'", (long long)im[0].seed, im[0].parameters);
  }
  uvit_images_free(im, n);

  /* Bad requests: a status, a message naming the problem, no images. */
  int bad_class = 10;
  gp.seed = 0;
  gp.classes = &bad_class;
  gp.n_classes = 1;
  st = uvit_generate(ctx, &gp, &im, &n);
  CHECK(st == UVIT_ERR_INVALID_ARGUMENT && strstr(uvit_last_error(), "class 10") && im == NULL,
        "'%s'", uvit_last_error());
  gp.classes = classes;
  gp.sampler = "no-such-sampler";
  st = uvit_generate(ctx, &gp, &im, &n);
  CHECK(st == UVIT_ERR_INVALID_ARGUMENT && strstr(uvit_last_error(), "unknown sampler"), "'%s'",
        uvit_last_error());
  gp.sampler = "DPM++ 2M"; /* A1111 spelling */
  st = uvit_generate(ctx, &gp, &im, &n);
  CHECK(st == UVIT_OK && n == 1 && strstr(im[0].parameters, "Sampler: dpm-solver++2m"), "'%s'",
        st == UVIT_OK ? im[0].parameters : uvit_last_error());
  uvit_images_free(im, n);
  gp.sampler = NULL;
  gp.negative_prompt = "blurry";
  st = uvit_generate(ctx, &gp, &im, &n);
  CHECK(st == UVIT_ERR_INVALID_ARGUMENT && strstr(uvit_last_error(), "negative prompt"), "'%s'",
        uvit_last_error());
  gp.negative_prompt = NULL;
  st = uvit_generate(ctx, NULL, &im, &n);
  CHECK(st == UVIT_ERR_INVALID_ARGUMENT && strstr(uvit_last_error(), "NULL"), "'%s'",
        uvit_last_error());

  /* A newer caller's struct: unknown trailing fields left zero are fine, set ones are refused. */
  struct {
    uvit_gen_params p;
    int future_field;
  } bigger;
  memset(&bigger, 0, sizeof bigger);
  uvit_gen_params_init(&bigger.p);
  bigger.p.struct_size = sizeof bigger;
  bigger.p.classes = classes;
  bigger.p.n_classes = 1;
  st = uvit_generate(ctx, &bigger.p, &im, &n);
  CHECK(st == UVIT_OK, "%s", uvit_last_error());
  uvit_images_free(im, n);
  bigger.future_field = 1;
  st = uvit_generate(ctx, &bigger.p, &im, &n);
  CHECK(st == UVIT_ERR_INVALID_ARGUMENT && strstr(uvit_last_error(), "does not know"), "'%s'",
        uvit_last_error());

  uvit_set_log_callback(NULL, NULL);
  uvit_ctx_free(ctx);
  if (failures)
    fprintf(stderr, "%d failure(s)\n", failures);
  else
    printf("test_capi: all checks passed\n");
  return failures ? 1 : 0;
}
