// `uvit serve`: loads a model once and serves the A1111, OpenAI and native HTTP APIs and the page
// (src/serve/, docs/serve.md).
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "cli/autoencoder_cli.hpp"
#include "cli/clip_options.hpp"
#include "cli/commands.hpp"
#include "uvit/dist.hpp"
#include "uvit/error.hpp"
#include "uvit/log.hpp"
#include "uvit/pipeline.hpp"
#ifdef UVIT_HAVE_SERVE
#include "serve/server.hpp"
#endif

namespace uvit::cli {

void add_serve(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "serve", "Serve a model over HTTP: a web page, the A1111 and OpenAI image APIs, jobs");
  struct Opts {
    PipelineOptions p;
    std::string host = "127.0.0.1", api_key;
    std::vector<std::string> set;
    int port = 7860, queue = 4, max_images = 16;
    double job_store_mb = 256;
    bool quiet = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--config,-c", o->p.config, "preset name, JSON file or training run folder")
      ->required();
  cmd->add_option("--weights,-w", o->p.weights, "weights (.safetensors or .pth)")->required();
  cmd->add_option("--set", o->set, "override a config field: section.key=value (repeatable)");
  cmd->add_option("--autoencoder", o->p.autoencoder,
                  "latent models: the autoencoder weights (autoencoder_kl.pth, a VA-VAE .pt, or "
                  ".safetensors)");
  cmd->add_option(
      "--autoencoder-config", o->p.autoencoder_config,
      std::string(kAutoencoderConfigHelp) + " (default: the preset's autoencoder.config)");
  cmd->add_option("--latent-stats", o->p.latent_stats,
                  std::string("latent models: ") + kLatentStatsHelp +
                      " (default: the preset's autoencoder.latent_stats, else none)");
  add_clip_options(cmd, o->p.clip, o->p.clip_config, o->p.vocab, ClipWeights::Text,
                   "text models: CLIPTextModel weights (for prompts)", "text models: ");
  add_device_options(cmd, o->p.device, o->p.precision);
  cmd->add_option("--host", o->host,
                  "address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes "
                  "the server to the network)");
  // Checked on the text, before the conversion to int would say "at most 2147483647".
  const CLI::Validator tcp_port(
      [](std::string& v) -> std::string {
        return std::strtod(v.c_str(), nullptr) > 65535 ? "must be at most 65535, got " + v : "";
      },
      "");
  cmd->add_option("--port", o->port,
                  "TCP port, 0..65535 (default 7860, A1111's; 0: a free one, named in the "
                  "startup line, which -q keeps)")
      ->check(at_least(0))
      ->check(tcp_port);
  cmd->add_option("--api-key", o->api_key,
                  "require Authorization: Bearer KEY on the API (not on / and /health)");
  cmd->add_option("--queue", o->queue,
                  "jobs that may wait behind the running one (default 4; "
                  "more get HTTP 429)")
      ->check(at_least(1));
  cmd->add_option("--max-images", o->max_images, "images per request (default 16)")
      ->check(at_least(1));
  cmd->add_option("--job-store-mb", o->job_store_mb,
                  "MiB of images the finished jobs kept for polling may hold, the oldest dropped "
                  "first (default 256; the newest is always kept)")
      ->check(at_least(0));
  cmd->add_flag("--quiet,-q", o->quiet, "print only errors");
  cmd->callback([o] {
#ifdef UVIT_HAVE_SERVE
    // One server answers a port: under mpirun every rank would load the model and listen.
    const int ranks = world(o->p.device).size();
    same_on_every_rank([&] {
      UVIT_CHECK(ranks == 1,
                 "uvit serve is one process: run it without mpirun or srun (started as ", ranks,
                 " ranks)");
    });
    const bool quiet = o->quiet;
    const auto print = [](LogLevel l, const std::string& m) {
      static const char* tags[] = {"[DEBUG]", "[INFO ]", "[WARN ]", "[ERROR]"};
      std::fprintf(stderr, "%s %s\n", tags[int(l)], m.c_str());
    };
    set_log_sink([quiet, print](LogLevel l, const std::string& m) {
      if (!quiet || l >= LogLevel::Error) print(l, m);
    });
    if (o->host != "127.0.0.1" && o->host != "localhost" && o->host != "::1")
      log(LogLevel::Warn, "listening on " + o->host + ": other machines can reach this server" +
                              (o->api_key.empty() ? " and it has no --api-key" : ""));
    serve::check_can_listen(o->host, o->port);  // before the model loads
    o->p.set = o->set;
    Pipeline pipe(o->p);
    serve::ServeOptions so;
    so.host = o->host;
    so.port = o->port;
    // With --port 0 the startup line is the one place that names the port: -q keeps it.
    so.announce = [quiet, any = o->port == 0, print](const std::string& m) {
      if (!quiet || any) print(LogLevel::Info, m);
    };
    so.api_key = o->api_key;
    so.max_queue = o->queue;
    so.max_images = o->max_images;
    so.job_store_bytes =  // beyond 1e12 MiB: no limit (and no overflow of size_t)
        o->job_store_mb < 1e12 ? size_t(o->job_store_mb * 1048576.0) : SIZE_MAX;
    serve::run_server(pipe, so);
    set_log_sink({});
#else
    fail(
        "this uvit was built without cpp-httplib: install libcpp-httplib-dev "
        "(scripts/setup.sh) and rebuild for `uvit serve`");
#endif
  });
}

}  // namespace uvit::cli
