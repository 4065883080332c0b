// RFC 4648 base64 without line breaks (JSON `b64_json`, A1111 `images`); Debian's libb64 wraps
// lines, which JSON clients reject.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace uvit::serve {

std::string base64_encode(const uint8_t* data, size_t n);
// Accepts an optional "data:...;base64," prefix; throws uvit::Error on a bad character or length.
std::vector<uint8_t> base64_decode(const std::string& text);

}  // namespace uvit::serve
