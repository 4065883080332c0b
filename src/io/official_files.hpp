// Where the docs say to get the official files the presets and commands name, so that a missing
// one's "cannot open" error can point there (docs/ux_audit.md, "Found in round 12").
#pragma once
#include <string>

namespace uvit::io {

// " (WHAT: docs/PAGE.md, \"SECTION\")" when the file name of `path` (its last component) is one
// of the known official file names, else "". Only the exact name counts: no guessing.
std::string official_file_hint(const std::string& path);

}  // namespace uvit::io
