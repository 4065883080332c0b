// train.overlap (docs/distributed.md, "Overlap"): the communication thread's queue (ranges in
// announcement order, the unannounced rest at the end, overlaps refused, errors rethrown), and the
// announcements of every network's backward: disjoint, within the table, covering the wired
// families' blocks and heads, and final when announced (the gradient of an announced range does
// not change afterwards in that backward). The bits of the overlapped exchange: tests/mpi/.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "net_inputs.hpp"
#include "train/grad_overlap.hpp"
#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/error.hpp"
#include "uvit/network.hpp"

namespace uvit {
namespace {

using Ranges = std::vector<std::pair<size_t, size_t>>;

TEST(GradOverlap, ExchangesAnnouncedRangesInOrderThenTheRest) {
  Ranges done;  // written by the communication thread, read after finish()
  GradOverlap o([&](size_t lo, size_t hi) { done.emplace_back(lo, hi); });
  for (int step = 0; step < 2; ++step) {  // the thread serves every step
    done.clear();
    o.begin(20);
    o.ready(12, 20);
    o.ready(3, 7);
    o.finish();
    EXPECT_EQ(done, (Ranges{{12, 20}, {3, 7}, {0, 3}, {7, 12}}));
  }
  done.clear();
  o.begin(5);  // nothing announced: all of [0, n) after backward
  o.finish();
  EXPECT_EQ(done, (Ranges{{0, 5}}));
}

TEST(GradOverlap, RefusesOverlappingOrOutsideRangesAndRethrows) {
  int calls = 0;
  GradOverlap o([&](size_t lo, size_t) {
    ++calls;
    if (lo == 4) throw Error("exchange failed");
  });
  o.begin(10);
  o.ready(2, 6);
  EXPECT_THROW(o.ready(5, 8), Error);   // meets [2, 6)
  EXPECT_THROW(o.ready(8, 11), Error);  // beyond n
  EXPECT_THROW(o.ready(7, 7), Error);   // empty
  o.finish();                           // [2, 6), [0, 2), [6, 10)
  EXPECT_EQ(calls, 3);
  o.begin(10);
  o.ready(4, 10);
  EXPECT_THROW(o.finish(), Error);  // the thread's error, at the wait
  o.begin(10);
  o.finish();  // the error was reported once; the thread goes on
}

// train.zero=2 without the overlap: each range exchanged in ready(), on the announcing thread,
// the rest in finish(); an error still surfaces at finish().
TEST(GradOverlap, ExchangesInlineWhenNotConcurrent) {
  Ranges done;
  const std::thread::id me = std::this_thread::get_id();
  bool elsewhere = false;
  GradOverlap o(
      [&](size_t lo, size_t hi) {
        elsewhere = elsewhere || std::this_thread::get_id() != me;
        if (lo == 100) throw Error("exchange failed");
        done.emplace_back(lo, hi);
      },
      false);
  o.begin(20);
  o.ready(12, 20);
  EXPECT_EQ(done, (Ranges{{12, 20}}));  // already exchanged
  o.finish();
  EXPECT_EQ(done, (Ranges{{12, 20}, {0, 12}}));
  EXPECT_FALSE(elsewhere);
  o.begin(200);
  o.ready(100, 200);
  EXPECT_THROW(o.finish(), Error);
}

std::vector<float> host(Backend& be, const float* p, size_t n) {
  std::vector<float> v(n);
  be.download(v.data(), p, n * 4);
  return v;
}

bool starts(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

// The tensors backward must announce before it returns, per wired family: every block's, and the
// head's. (Embeddings are final only at the end: the trainer's rest.)
bool must_announce(const std::string& net, const std::string& name) {
  if (net == "uvit" || net == "uvit_t2i")
    for (const char* p : {"in_blocks.", "mid_block.", "out_blocks.", "norm.", "decoder_pred.",
                          "final_layer.", "token_conv."})
      if (starts(name, p)) return true;
  if (net == "dit" || net == "skip_dit" || net == "lightningdit" || net == "fitv2" ||
      net == "fitv1" || net == "svg" || net == "diffit")
    for (const char* p : {"blocks.", "final_layer.", "skip_norms.", "skip_linears."})
      if (starts(name, p)) return true;
  if (net == "mdt" || net == "mdtv1")  // the side block too, also in a pass that skips it
    for (const char* p :
         {"en_inblocks.", "en_outblocks.", "de_blocks.", "blocks.", "sideblocks.", "final_layer."})
      if (starts(name, p)) return true;
  return false;
}

TEST(GradOverlap, NetworksAnnounceFinalDisjointRanges) {
  const std::string fx = UVIT_TEST_FIXTURES;
  auto be = make_backend("cpu", "fp32");
  for (const char* c : {"cond_p2", "t2i", "dit_p2", "skipdit_p2", "ldit_p1", "fit_p2", "fitv1_p2",
                        "mdt_p2_masked", "mdtv1_p2_masked", "diffit_p2", "svg_qknorm_sigma"})
    for (int pass = 0; pass < 2; ++pass) {  // MDT's masked pass (its side block) too
      SCOPED_TRACE(cat(c, " pass ", pass));
      const Config cfg = load_config(fx + "/" + c + ".json");
      const NetSpec& n = cfg.spec;
      auto net = make_network(cfg, *be);
      if (pass >= net->train_passes()) continue;
      net->load_file(fx + "/" + c + ".pth");  // the twin's weights: nonzero gradients everywhere
      net->set_train_pass(pass, 7, 0);
      const size_t P = net->num_params();
      testing::NetInputs in(*be, n, 2);
      // The gradient of each range as it was when announced.
      Ranges got;
      std::vector<std::vector<float>> at_announce;
      net->on_grads_ready([&](size_t lo, size_t hi) {
        got.emplace_back(lo, hi);
        at_announce.push_back(host(*be, net->grads() + lo, hi - lo));
      });
      net->zero_grad();
      in.train_pass(*net);
      const std::vector<float> g = host(*be, net->grads(), P);
      std::vector<int> covered(P, 0);
      for (size_t r = 0; r < got.size(); ++r) {
        const auto [lo, hi] = got[r];
        ASSERT_TRUE(lo < hi && hi <= P) << "[" << lo << ", " << hi << ") of " << P;
        for (size_t e = lo; e < hi; ++e) ++covered[e];
        EXPECT_EQ(0, std::memcmp(at_announce[r].data(), g.data() + lo, (hi - lo) * 4))
            << "the gradient of [" << lo << ", " << hi << ") changed after it was announced";
      }
      size_t announced = 0, nonzero = 0;
      for (const ParamEntry& e : net->table().entries()) {
        SCOPED_TRACE(e.name);
        for (size_t k = e.offset; k < e.offset + e.numel; ++k) {
          ASSERT_LE(covered[k], 1) << "announced twice";
          announced += size_t(covered[k]);
          nonzero += covered[k] && g[k] != 0.f;
        }
        if (must_announce(n.name, e.name)) {
          EXPECT_EQ(covered[e.offset], 1) << "not announced by " << n.name << "'s backward";
        }
      }
      // A check of finality only means something when the announced gradients are not all zero.
      if (announced) {
        EXPECT_GT(nonzero, announced / 2);
      }
      // A second backward announces the same ranges in the same order (the ranks' issue order).
      const Ranges first = got;
      got.clear();
      at_announce.clear();
      net->set_train_pass(pass, 7, 0);
      in.train_pass(*net);
      EXPECT_EQ(got, first);
      net->on_grads_ready(nullptr);
    }
}

}  // namespace
}  // namespace uvit
