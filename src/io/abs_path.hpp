// One way to record a path so that it means the same file from any working folder: the manifests
// (eval's chunks, extract-features' folders), train's recorded data and init weights, and the key
// of the weights a process loaded (io/loaded_weights.hpp).
#pragma once
#include <string>

namespace uvit::io {

// `path` made absolute against the working folder, then "." and ".." and doubled slashes removed
// by its text alone (`./RUN/w` and `RUN/w` give one string). Lexical, not canonical: symbolic
// links are kept as named (a link re-pointed later still names what it names then, and the
// content checks by SHA-256 or file identity tell the two apart), and a file that does not exist
// yet has a key too. Without a working folder (deleted under the process) the lexical form alone.
std::string absolute_path(const std::string& path);

}  // namespace uvit::io
