// ParamTable::trained_ranges: the optimizer's list of trained float ranges, kept by add() rather
// than rebuilt at every step, must follow every change of the table and equal a fresh scan.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "uvit/config.hpp"
#include "uvit/network.hpp"
#include "uvit/params.hpp"

using namespace uvit;

namespace {

using Ranges = std::vector<std::pair<size_t, size_t>>;

// The definition, from the entries alone: trained, non-empty entries, adjacent ones merged.
Ranges scan(const ParamTable& t) {
  Ranges r;
  for (const ParamEntry& e : t.entries()) {
    if (e.frozen || e.numel == 0) continue;
    if (!r.empty() && r.back().second == e.offset)
      r.back().second += e.numel;
    else
      r.emplace_back(e.offset, e.offset + e.numel);
  }
  return r;
}

}  // namespace

TEST(ParamTable, TrainedRangesFollowEveryAdd) {
  ParamTable t;
  EXPECT_TRUE(t.trained_ranges().empty());
  t.add("a", {2, 3});     // [0, 6)
  t.add("b", {4}, true);  // [6, 10) frozen
  EXPECT_EQ(t.trained_ranges(), (Ranges{{0, 6}}));
  t.add("c", {0});  // empty: no range
  t.add("d", {5});  // [10, 15)
  t.add("e", {1});  // [15, 16): merges with d
  EXPECT_EQ(t.trained_ranges(), (Ranges{{0, 6}, {10, 16}}));
  t.add("f", {2}, true);  // [16, 18) frozen
  t.add("g", {3});        // [18, 21)
  EXPECT_EQ(t.trained_ranges(), (Ranges{{0, 6}, {10, 16}, {18, 21}}));
  EXPECT_EQ(t.trained_ranges(), scan(t));

  // A copy grows on its own; the original's ranges stay as they were.
  ParamTable u = t;
  u.add("h", {4});  // [21, 25): merges with g in u only
  EXPECT_EQ(u.trained_ranges(), (Ranges{{0, 6}, {10, 16}, {18, 25}}));
  EXPECT_EQ(t.trained_ranges(), (Ranges{{0, 6}, {10, 16}, {18, 21}}));
}

// freeze_if (train.finetune partial) freezes more entries and rebuilds the ranges; trains(off)
// answers for every float as the ranges say, at their edges too.
TEST(ParamTable, FreezeIfRebuildsTheRangesAndTrainsFollowsThem) {
  ParamTable t;
  t.add("a.weight", {2, 3});  // [0, 6)
  t.add("a.bias", {3});       // [6, 9)
  t.add("pos", {4}, true);    // [9, 13) frozen
  t.add("b.weight", {2, 2});  // [13, 17)
  t.add("b.bias", {2});       // [17, 19)
  t.freeze_if([](const ParamEntry& e) { return e.name.find("bias") == std::string::npos; });
  EXPECT_EQ(t.trained_ranges(), (Ranges{{6, 9}, {17, 19}}));
  EXPECT_EQ(t.trained_ranges(), scan(t));
  EXPECT_TRUE(t.at("pos").frozen && t.at("a.weight").frozen && !t.at("b.bias").frozen);
  t.freeze_if([](const ParamEntry&) { return false; });  // frozen entries stay frozen
  EXPECT_EQ(t.trained_ranges(), (Ranges{{6, 9}, {17, 19}}));
  for (size_t off = 0; off < t.total() + 3; ++off)
    EXPECT_EQ(t.trains(off), (off >= 6 && off < 9) || (off >= 17 && off < 19)) << off;
}

// Real tables with frozen tensors (DiT's pos_embed, LightningDiT's RoPE tables) and without
// (U-ViT): the kept ranges equal a scan, and leave out exactly the frozen floats.
TEST(ParamTable, TrainedRangesOfPresetsLeaveOutTheFrozenTensors) {
  for (const char* preset : {"fmnist_dit_tiny", "fmnist_lightningdit_tiny", "cifar10_uvit_small"}) {
    SCOPED_TRACE(preset);
    const ParamTable t = network_param_table(load_config(preset));
    EXPECT_EQ(t.trained_ranges(), scan(t));
    size_t trained = 0, frozen = 0;
    for (const auto& [b, e] : t.trained_ranges()) trained += e - b;
    for (const ParamEntry& e : t.entries()) frozen += e.frozen ? e.numel : 0;
    EXPECT_EQ(trained + frozen, t.total());
    if (std::string(preset) != "cifar10_uvit_small") EXPECT_GT(frozen, 0u);
  }
}
