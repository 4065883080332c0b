// Fixtures that a tests/reference script writes, made once per test process and shared by the
// tests of a file, and the relative error the twin comparisons use.
#pragma once
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "rel_err.hpp"
#include "temp_dir.hpp"
#include "uvit/io.hpp"

namespace uvit_test {

// Runs `/usr/bin/python3 tests/reference/<script_args> --out DIR` once per prefix and returns DIR,
// or null when /usr/bin/python3 lacks one of `modules` or the script fails.
inline const TempDir* torch_fixtures(const std::string& prefix, const std::string& script_args,
                                     const std::string& modules = "torch, numpy") {
  static std::map<std::string, std::unique_ptr<TempDir>> made;
  const auto it = made.find(prefix);
  if (it != made.end()) return it->second.get();
  std::unique_ptr<TempDir> dir;
  const std::string probe = "/usr/bin/python3 -c 'import " + modules + "' >/dev/null 2>&1";
  if (std::system(probe.c_str()) == 0) {
    dir = std::make_unique<TempDir>(prefix);
    const std::string cmd = "/usr/bin/python3 " + std::string(UVIT_TEST_SOURCE) + "/reference/" +
                            script_args + " --out " + dir->dir.string() + " >/dev/null";
    if (std::system(cmd.c_str()) != 0) dir.reset();
  }
  return (made[prefix] = std::move(dir)).get();
}

// For slow scripts: runs `/usr/bin/python3 tests/reference/<script_args> --out DIR` once per build
// directory (DIR = UVIT_TEST_FIXTURES/<name>, kept across runs) unless DIR/<marker> exists, in a
// private folder renamed into place, so parallel test processes never read a half-written set.
inline std::string build_dir_fixtures(const std::string& name, const std::string& script_args,
                                      const std::string& marker) {
  namespace fs = std::filesystem;
  const std::string d = std::string(UVIT_TEST_FIXTURES) + "/" + name;
  if (!fs::exists(d + "/" + marker)) {
    const std::string tmp = d + ".tmp" + std::to_string(::getpid());
    const std::string cmd = "/usr/bin/python3 " + std::string(UVIT_TEST_SOURCE) + "/reference/" +
                            script_args + " --out " + tmp + " > " + tmp + ".log 2>&1";
    fs::create_directories(fs::path(d).parent_path());
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::error_code ec;
    fs::rename(tmp, d, ec);  // fails when another process got there first: use theirs
    if (ec) fs::remove_all(tmp);
    fs::remove(tmp + ".log", ec);
  }
  return d;
}

// max |a - b| / max |b| (1e9 and a failure when the shapes differ).
inline double rel_err(const uvit::Array& a, const uvit::Array& b) {
  EXPECT_EQ(a.shape, b.shape);
  if (a.shape != b.shape) return 1e9;
  return rel_err(a.to_f32(), b.to_f32());
}

}  // namespace uvit_test

// In a test: `d` is the fixture directory, or the test skips.
#define NEED_TORCH_FIXTURES(prefix, script_args)                                 \
  const uvit_test::TempDir* fx = uvit_test::torch_fixtures(prefix, script_args); \
  if (!fx) GTEST_SKIP() << "python3-torch is not available to /usr/bin/python3"; \
  const uvit_test::TempDir& d = *fx
