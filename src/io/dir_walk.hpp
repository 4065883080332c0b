// Rules shared by the folder walks (training images, src/data/; FID folders, src/eval/).
#pragma once
#include <string_view>

namespace uvit::io {

// A name with a leading '.' is not a user's image: .DS_Store, macOS's ._NAME.png AppleDouble
// metadata, .git, .ipynb_checkpoints (docs/data.md, "What an image folder may hold";
// docs/evaluation.md, "Image folders").
inline bool hidden_name(std::string_view name) { return !name.empty() && name[0] == '.'; }

}  // namespace uvit::io
