// The JSON the commands print or write for scripts and people (info --json, bench, eval and
// clip-score --json, the chunk manifests; docs/cli.md "JSON outputs").
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "uvit/error.hpp"

namespace uvit::cli {

// j as text, with invalid UTF-8 (a Latin-1 file name) written as U+FFFD: a plain dump() throws
// "type_error.316" after the work is done. Only for records read by people and scripts, never
// for a file the tool reads back as a path (a run's config.json).
inline std::string json_text(const nlohmann::json& j, int indent = -1) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}
inline std::string json_text(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// A flat object on one line in Python's json.dumps layout ({"a": 1, "b": "x"}), keys in the order
// given: bench's result lines, which scripts grep as written. Numbers round-trip (not 6 digits),
// a non-finite one is null (not the invalid token inf), strings are escaped.
inline std::string json_flat_line(const nlohmann::ordered_json& o) {
  std::string s;
  for (auto it = o.begin(); it != o.end(); ++it)
    s += (s.empty() ? "{" : ", ") + json_text(nlohmann::json(it.key())) + ": " +
         json_text(it.value());
  return s + "}";
}

// Fails naming `option` unless `value` is UTF-8 text: a value a run records in its config.json
// (--data, --init, --set) must survive as JSON text, or the run stops with "type_error.316" (a
// Latin-1 folder name from an old archive).
inline void check_json_text(const char* option, const std::string& value) {
  try {
    (void)nlohmann::json(value).dump();
  } catch (const nlohmann::json::type_error&) {
    fail(option, " ", value,
         ": not UTF-8 text, and the run records it in config.json (JSON text); rename it, or give "
         "a link to it with a UTF-8 name");
  }
}

}  // namespace uvit::cli
