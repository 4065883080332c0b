// `uvit serve` end to end: each input is the raw bytes of one HTTP connection to a live server
// (httplib's request parsing, our routes, JSON fields, base64 PNG uploads, jobs) over a tiny
// random-weights class model. A 500 answer means an exception other than a bad-input error
// escaped a handler: reported as a crash, like a sanitizer finding or a dead server.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <csignal>
#include <thread>

#include "fuzz_common.hpp"
#include "fuzz_model.hpp"
#include "serve/server.hpp"
#include "uvit/pipeline.hpp"

namespace {

int g_port = 0;

void start_server() {
  const uvit::fuzz::TinyModel m = uvit::fuzz::tiny_model("fuzz_serve");
  uvit::PipelineOptions po;
  po.config = m.config;
  po.weights = m.weights;
  static uvit::Pipeline* pipe = new uvit::Pipeline(po);  // lives as long as the server thread
  uvit::serve::ServeOptions so;
  so.port = g_port = 20000 + int(getpid() % 20000);
  so.max_images = 2;
  so.max_queue = 2;
  so.max_body = 1 << 20;
  std::thread([so] { uvit::serve::run_server(*pipe, so); }).detach();
  for (int i = 0; i < 600; ++i) {  // until it listens
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(g_port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    close(fd);
    if (ok) return;
    usleep(100000);
  }
  std::fprintf(stderr, "fuzz_serve: the server did not start on port %d\n", g_port);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  std::signal(SIGPIPE, SIG_IGN);
  start_server();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(g_port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::fprintf(stderr, "fuzz_serve: the server stopped accepting connections\n");
    std::abort();
  }
  timeval tv{120, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  for (size_t done = 0; done < size;) {
    ssize_t n = send(fd, data + done, size - done, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may answer and close before reading everything
    done += size_t(n);
  }
  shutdown(fd, SHUT_WR);
  std::string resp;
  char buf[4096];
  for (ssize_t n; (n = recv(fd, buf, sizeof buf, 0)) > 0;) resp.append(buf, size_t(n));
  close(fd);
  if (resp.compare(0, 13, "HTTP/1.1 500 ") == 0) {
    std::fprintf(stderr, "fuzz_serve: 500 answer:\n%s\n", resp.substr(0, 2000).c_str());
    std::abort();
  }
  return 0;
}
