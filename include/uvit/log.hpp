// Library log lines ("loaded ...", "sampling completed, taking 3.2 s"): sent to one process-wide
// sink, which the C API's uvit_set_log_callback and the CLI install. No sink: nothing is printed.
#pragma once
#include <functional>
#include <string>

namespace uvit {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3 };
using LogSink = std::function<void(LogLevel, const std::string&)>;

void set_log_sink(LogSink sink);  // {} removes it
void log(LogLevel level, const std::string& message);

}  // namespace uvit
