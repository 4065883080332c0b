// Data parallelism without MPI: the loader's rank slices and the ordered sum of the single-rank
// communicator (the MPI versions: tests/mpi/).
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "toy_dataset.hpp"
#include "uvit/data.hpp"
#include "uvit/dist.hpp"
#include "uvit/error.hpp"

using namespace uvit;

namespace {
using uvit::testing::Toy;

LoaderOptions opts(int64_t group, int64_t first, int64_t count) {
  LoaderOptions o;
  o.batch_size = 3;
  o.seed = 5;
  o.random_flip = true;  // flips and label dropout are keyed by the global position
  o.cfg = true;
  o.p_uncond = 0.3;
  o.group = group, o.take_first = first, o.take_count = count;
  return o;
}
}  // namespace

// V slices x A micro-batches: the batches every rank takes, in rank order, are the single
// stream's, and the state after each step (a checkpoint) is the single stream's too.
TEST(Dist, LoaderSlicesConcatenateToTheGlobalStream) {
  auto ds = std::make_shared<Toy>(29);  // 9 batches of 3 per epoch, 2 items dropped
  const int steps = 7;
  for (int V : {1, 2, 3, 4})
    for (int A : {1, 2}) {
      const int G = V * A;
      Loader whole(ds, opts(1, 0, 1));
      std::vector<Batch> ref;
      std::vector<LoaderState> ref_state;
      for (int s = 0; s < steps; ++s) {
        for (int i = 0; i < G; ++i) ref.push_back(whole.next());
        ref_state.push_back(whole.get_state());
      }
      for (int W : {1, 2, 4}) {
        if (V % W) continue;
        const int k = V / W;
        for (int r = 0; r < W; ++r) {
          Loader part(ds, opts(G, int64_t(r) * k * A, int64_t(k) * A));
          for (int s = 0; s < steps; ++s) {
            for (int i = 0; i < k * A; ++i) {
              const Batch b = part.next();
              const Batch& want = ref[size_t(s * G + r * k * A + i)];
              ASSERT_EQ(b.x, want.x) << "V " << V << " A " << A << " W " << W << " rank " << r;
              ASSERT_EQ(b.labels, want.labels);
              ASSERT_EQ(b.epoch, want.epoch);
              ASSERT_EQ(b.offset, want.offset);
            }
            const LoaderState st = part.get_state();
            EXPECT_EQ(st.epoch, ref_state[size_t(s)].epoch);
            EXPECT_EQ(st.offset, ref_state[size_t(s)].offset);
          }
          // Resumed at a step boundary, a rank continues its slice of the global stream.
          Loader again(ds, opts(G, int64_t(r) * k * A, int64_t(k) * A));
          again.set_state(ref_state[2]);
          EXPECT_EQ(again.next().x, ref[size_t(3 * G + r * k * A)].x);
        }
      }
    }
}

TEST(Dist, LoaderRejectsABadSlice) {
  auto ds = std::make_shared<Toy>(29);
  EXPECT_THROW({ Loader l(ds, opts(2, 1, 2)); }, Error);
  EXPECT_THROW({ Loader l(ds, opts(0, 0, 1)); }, Error);
}

// The single-rank communicator: k buffers added left to right, bit for bit.
TEST(Dist, SingleCommOrderedSumIsTheSequentialSum) {
  std::mt19937 gen(3);
  std::uniform_real_distribution<float> u(-1, 1);
  const int k = 5;
  const size_t n = 1001;
  std::vector<float> bufs(k * n), full(n);
  for (size_t i = 0; i < bufs.size(); ++i) bufs[i] = u(gen) * std::ldexp(1.f, int(i % 40) - 20);
  SingleComm c;
  c.reduce_scatter_ordered(bufs.data(), k, n, n, n + 16, full.data());
  c.allgather_shards(full.data(), n, n + 16);
  for (size_t e = 0; e < n; ++e) {
    float s = bufs[e];
    for (int j = 1; j < k; ++j) s += bufs[j * n + e];
    ASSERT_EQ(std::memcmp(&s, &full[e], 4), 0) << e;
  }
  // In place into the first buffer: the same bits.
  std::vector<float> in_place = bufs;
  c.reduce_scatter_ordered(in_place.data(), k, n, n, n, in_place.data());
  EXPECT_EQ(std::memcmp(in_place.data(), full.data(), n * 4), 0);
  EXPECT_THROW(c.reduce_scatter_ordered(bufs.data(), k, n, n, n - 1, full.data()), Error);
  // Addition is not associative here: a pairwise order gives other bits somewhere.
  size_t differ = 0;
  for (size_t e = 0; e < n; ++e) {
    const float pair =
        (bufs[e] + bufs[n + e]) + ((bufs[2 * n + e] + bufs[3 * n + e]) + bufs[4 * n + e]);
    differ += pair != full[e];
  }
  EXPECT_GT(differ, 0u);
  EXPECT_TRUE(any_rank(c, true));
  EXPECT_FALSE(any_rank(c, false));
  EXPECT_EQ(allgather_doubles(c, {1.5, 2.5}), (std::vector<double>{1.5, 2.5}));
  const char msg[] = "abc";
  EXPECT_EQ(c.gatherv_bytes(msg, 3, 0), (std::vector<uint8_t>{'a', 'b', 'c'}));
}

// The shard bounds the trainer and gather_shards share: hand-computed sizes (multiples of 16
// floats, W shards covering n), each rank's range, and the ranges tiling [0, n) in rank order.
TEST(Dist, ShardSizesAndRangesTileTheVector) {
  EXPECT_EQ(shard_size(100, 1), 112u);  // 100 rounded up to 16
  EXPECT_EQ(shard_size(100, 3), 48u);   // ceil(100 / 48) * 16
  EXPECT_EQ(shard_size(96, 2), 48u);
  EXPECT_EQ(shard_size(0, 4), 0u);
  EXPECT_EQ(shard_range(100, 48, 0).lo, 0u);
  EXPECT_EQ(shard_range(100, 48, 0).hi, 48u);
  EXPECT_EQ(shard_range(100, 48, 2).lo, 96u);
  EXPECT_EQ(shard_range(100, 48, 2).hi, 100u);  // the last shard cut short
  EXPECT_EQ(shard_len(100, 48, 2), 4u);
  EXPECT_EQ(shard_range(20, 16, 3).lo, 20u);  // a rank beyond the end holds nothing
  EXPECT_EQ(shard_len(20, 16, 3), 0u);
  for (size_t n : {0, 1, 15, 16, 17, 1000, 123457})
    for (int W : {1, 2, 3, 4, 7}) {
      const size_t sh = shard_size(n, W);
      EXPECT_EQ(sh % 16, 0u);
      size_t next = 0;
      for (int r = 0; r < W; ++r) {
        const ShardRange g = shard_range(n, sh, r);
        EXPECT_EQ(g.lo, next) << n << " " << W << " " << r;
        EXPECT_LE(g.hi - g.lo, sh);
        next = g.hi;
      }
      EXPECT_EQ(next, n) << n << " " << W;
    }
}

// Without a launcher the process is a single rank, and a Slurm job of several tasks that MPI sees
// as one is refused.
TEST(Dist, PlainProcessIsASingleRankAndTheSlurmGuardFires) {
  if (launched_by_mpi()) GTEST_SKIP() << "started by an MPI launcher";
  Comm& c = world();
  EXPECT_EQ(c.size(), 1);
  EXPECT_EQ(c.name(), "single");
  setenv("SLURM_NTASKS", "4", 1);
  try {
    check_world_matches_scheduler(c);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("SLURM_NTASKS"), std::string::npos) << e.what();
  }
  setenv("SLURM_NTASKS", "1", 1);
  EXPECT_NO_THROW(check_world_matches_scheduler(c));
  unsetenv("SLURM_NTASKS");
}
