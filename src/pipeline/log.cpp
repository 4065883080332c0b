#include "uvit/log.hpp"

#include <mutex>

namespace uvit {
namespace {
std::mutex g_mu;
LogSink g_sink;
}  // namespace

void set_log_sink(LogSink sink) {
  std::lock_guard<std::mutex> l(g_mu);
  g_sink = std::move(sink);
}

void log(LogLevel level, const std::string& message) {
  std::lock_guard<std::mutex> l(g_mu);  // one line at a time, and no sink swapped mid-call
  if (g_sink) g_sink(level, message);
}

}  // namespace uvit
