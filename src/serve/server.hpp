// `uvit serve`: the HTTP API (A1111 /sdapi/v1, OpenAI /v1/images, native /uvit/v1 jobs with
// server-sent progress) and the embedded page, over one Pipeline and its JobQueue. docs/serve.md.
#pragma once
#include <functional>
#include <string>

#include "uvit/pipeline.hpp"

namespace uvit::serve {

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 7860;                    // 0: a free one the kernel picks (named by `announce`)
  std::string api_key;                // "" = none
  int max_queue = 4;                  // jobs waiting behind the running one; more get 429
  int max_images = 16;                // per request
  size_t max_body = size_t(8) << 20;  // bytes (png-info uploads)
  // Bytes of images (with their metadata) the finished jobs kept for polling may hold; the newest
  // finished job is kept whatever its size (docs/serve.md, "Memory over time").
  size_t job_store_bytes = size_t(256) << 20;
  // Told the startup line, "serving MODEL on http://HOST:PORT/" (unset: logged as info).
  std::function<void(const std::string&)> announce;
};

// Serves until SIGINT/SIGTERM. Throws uvit::Error when the address cannot be bound.
void run_server(Pipeline& pipe, const ServeOptions& o);

// Throws run_server's error now if host:port cannot be bound (a busy port, an address of another
// machine), so that `uvit serve` says so before it spends time loading the model.
void check_can_listen(const std::string& host, int port);

// The page served at GET / (page.cpp).
const char* page_html();

}  // namespace uvit::serve
