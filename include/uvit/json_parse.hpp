// JSON parsing with a nesting limit, for every document that comes from a file or a request.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "uvit/error.hpp"

namespace uvit {

// nlohmann's parser recurses once per nesting level when it builds the value, so a few MB of
// "[[[[" (a safetensors header, a preset, a vocab.json, a serve request) would overflow the stack.
// Documents nested deeper than this are refused with "WHAT: JSON nested deeper than 256 levels";
// a number beyond the double range (1e400, which nlohmann reports as out_of_range rather than as
// a parse error) is "WHAT: invalid JSON: number overflow parsing '1e400'". Syntax errors still
// throw nlohmann::json::parse_error for the caller to word.
constexpr int kMaxJsonDepth = 256;

template <class Json = nlohmann::json>
Json parse_json(const std::string& text, const std::string& what) {
  try {
    return Json::parse(text, [&](int depth, typename Json::parse_event_t ev, Json&) {
      if (depth >= kMaxJsonDepth &&
          (ev == Json::parse_event_t::object_start || ev == Json::parse_event_t::array_start))
        fail(what, ": JSON nested deeper than ", kMaxJsonDepth, " levels");
      return true;
    });
  } catch (const typename Json::out_of_range& e) {
    const std::string m = e.what();  // "[json.exception.out_of_range.406] number overflow ..."
    const size_t at = m.find("] ");
    fail(what, ": invalid JSON: ", at == std::string::npos ? m : m.substr(at + 2));
  }
}

}  // namespace uvit
