// Shared by the libFuzzer drivers (docs/fuzzing.md): the input as a file for the path-taking
// readers, and the property every reader must keep on bad input.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "uvit/error.hpp"

namespace uvit::fuzz {

// The scratch folder of this process: $TMPDIR (tmpfs /dev/shm when unset).
inline std::string scratch() {
  const char* dir = std::getenv("TMPDIR");
  return dir && *dir ? dir : "/dev/shm";
}

inline void write(const std::string& path, const uint8_t* data, size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (size && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::abort();
  }
}

// Writes the input to a per-process file with the extension the reader dispatches on, and returns
// its path.
inline std::string as_file(const uint8_t* data, size_t size, const std::string& name) {
  const std::string path = cat(scratch(), "/uvit_fuzz_", getpid(), "_", name);
  write(path, data, size);
  return path;
}

// A per-process folder (emptied) for the readers that take a dataset directory.
inline std::string as_dir(const std::string& name) {
  const std::string dir = cat(scratch(), "/uvit_fuzz_", getpid(), "_", name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// Runs the reader: returning or a uvit::Error with a non-empty message is fine; any other
// exception escapes to libFuzzer and is reported as a crash, as are ASan/UBSan findings.
template <class F>
void expect_clean(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    if (!*e.what()) {
      std::fprintf(stderr, "uvit::Error with an empty message\n");
      std::abort();
    }
  }
}

}  // namespace uvit::fuzz
