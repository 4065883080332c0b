// Where an installed uvit keeps its data (`cmake --install build --prefix P`: P/share/uvit holds
// the presets and the CLIP vocabulary, docs/c_api.md "The installed library").
#pragma once
#include <filesystem>
#include <vector>

namespace uvit {

// P/share/uvit as seen from the running program (<exe dir>/../share/uvit) and, when this code runs
// inside libuvit.so (a program of its own that links the C API), from the library's folder. They
// need not exist; the first found wins.
std::vector<std::filesystem::path> installed_data_dirs();

// P/share/uvit of the prefix the build was configured for (CMAKE_INSTALL_FULL_DATADIR/uvit): the
// last place looked, after the source tree, for a program that links the static library and is
// installed elsewhere than P/bin (its own folder tells nothing). An install moved by `cmake
// --install --prefix Q` is found from the relative places only.
std::filesystem::path configured_data_dir();

}  // namespace uvit
