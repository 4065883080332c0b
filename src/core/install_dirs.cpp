#include "core/install_dirs.hpp"

#include <dlfcn.h>

#include <string>

namespace fs = std::filesystem;

namespace uvit {

std::vector<fs::path> installed_data_dirs() {
  std::vector<fs::path> dirs;
  std::error_code ec;
  // The relative paths bin -> share and lib -> share of the install (GNUInstallDirs; lib may be
  // lib/x86_64-linux-gnu), set by cmake/c_api.cmake.
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) dirs.push_back((exe.parent_path() / UVIT_BIN_TO_DATA / "uvit").lexically_normal());
  // In the uvit program the static library is part of the executable; in a program that links
  // libuvit.so, /proc/self/exe is that program, and the library's own file says where P is.
  Dl_info info{};
  // The library is told from the program by its file, not by a ".so" in a name.
  if (::dladdr(reinterpret_cast<const void*>(&installed_data_dirs), &info) != 0 &&
      info.dli_fname != nullptr) {
    const fs::path lib = fs::weakly_canonical(info.dli_fname, ec);
    if (!ec && lib != exe)
      dirs.push_back((lib.parent_path() / UVIT_LIB_TO_DATA / "uvit").lexically_normal());
  }
  return dirs;
}

fs::path configured_data_dir() { return UVIT_INSTALL_DATA_DIR; }

}  // namespace uvit
