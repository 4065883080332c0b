#include "io/abs_path.hpp"

#include <filesystem>

namespace uvit::io {

std::string absolute_path(const std::string& path) {
  std::error_code ec;
  const std::filesystem::path a = std::filesystem::absolute(path, ec);
  return (ec ? std::filesystem::path(path) : a).lexically_normal().string();
}

}  // namespace uvit::io
