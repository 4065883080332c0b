// The settings the ranks of a job compare (src/cli/flat_settings.hpp): numbers by value.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli/flat_settings.hpp"

using nlohmann::json;
using uvit::cli::flat_settings;

namespace {
std::string text(const json& j) { return flat_settings(j).dump(); }
}  // namespace

TEST(FlatSettings, SameNumberSameText) {
  // 64 and 64.0 (a config written by hand, or by another tool) are the same setting.
  EXPECT_EQ(text(json::parse(R"({"train": {"batch_size": 64}})")),
            text(json::parse(R"({"train": {"batch_size": 64.0}})")));
  EXPECT_EQ(text(json::parse(R"({"betas": [0.9, 1]})")),
            text(json::parse(R"({"betas": [0.9, 1.0]})")));
  EXPECT_EQ(text(json::parse(R"({"a": -0.0})")), text(json::parse(R"({"a": 0})")));
  EXPECT_EQ(text(json::parse(R"({"a": 1e3})")), text(json::parse(R"({"a": 1000})")));
  EXPECT_EQ(text(json::parse(R"({"a": 0.001})")), text(json::parse(R"({"a": 1e-3})")));
  // Each is written as the integer: {"/train/batch_size":64}.
  EXPECT_EQ(text(json::parse(R"({"train": {"batch_size": 64.0}})")), R"({"/train/batch_size":64})");
}

TEST(FlatSettings, OtherNumbersStayOther) {
  EXPECT_NE(text(json::parse(R"({"a": 64.5})")), text(json::parse(R"({"a": 64})")));
  EXPECT_NE(text(json::parse(R"({"a": 0.001})")),
            text(json::parse(R"({"a": 0.0010000000000000002})")));
  // A number is not its text, nor true.
  EXPECT_NE(text(json::parse(R"({"a": 1})")), text(json::parse(R"({"a": "1"})")));
  EXPECT_NE(text(json::parse(R"({"a": 1})")), text(json::parse(R"({"a": true})")));
  // Beyond 64-bit integers a whole float stays a float (its own value, unchanged).
  EXPECT_EQ(text(json::parse(R"({"a": 1e300})")), R"({"/a":1e+300})");
}

TEST(FlatSettings, SkipsPerNodeEntries) {
  const json a = json::parse(R"({"dataset": {"path": "/a", "name": "x"}, "lr": 1.0})");
  const json b = json::parse(R"({"dataset": {"path": "/b", "name": "x"}, "lr": 1})");
  EXPECT_NE(text(a), text(b));
  EXPECT_EQ(flat_settings(a, {"/dataset/path"}).dump(), flat_settings(b, {"/dataset/path"}).dump());
}
