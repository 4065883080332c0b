// The progress display (src/cli/progress.hpp, docs/cli.md): tqdm's terminal layout, the plain
// lines of a log and their throttle, with an injected clock (no timing) and hand-computed lines.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cli/progress.hpp"

using uvit::cli::PlainThrottle;
using uvit::cli::Progress;
using uvit::cli::progress_bar_line;
using uvit::cli::progress_clock;
using uvit::cli::progress_plain_line;
using uvit::cli::ProgressIo;
using uvit::cli::ProgressState;

namespace {
ProgressState state(const char* label, long done, long total, double elapsed, long start = 0) {
  ProgressState s;
  s.label = label, s.done = done, s.total = total, s.elapsed = elapsed, s.start = start;
  return s;
}

// A Progress on a fake clock that records what it writes.
struct Recorder {
  double now = 0;
  std::vector<std::string> out;
  ProgressIo io(bool tty) {
    ProgressIo io;
    io.tty = tty;
    io.seconds = [this] { return now; };
    io.write = [this](const std::string& s) { out.push_back(s); };
    return io;
  }
};
}  // namespace

TEST(Progress, Clock) {
  EXPECT_EQ(progress_clock(0), "00:00");
  EXPECT_EQ(progress_clock(12.4), "00:12");
  EXPECT_EQ(progress_clock(59.6), "01:00");
  EXPECT_EQ(progress_clock(3599), "59:59");
  EXPECT_EQ(progress_clock(3723), "1:02:03");
}

TEST(Progress, TerminalLineIsTqdms) {
  // 37 of 100 in 12.25 s: 3.0204 it/s, 63 / 3.0204 = 20.9 s left; 3.7 cells = 3 full + 5/8.
  EXPECT_EQ(progress_bar_line(state("sample", 37, 100, 12.25)),
            "sample  37%|███▋      | 37/100 [00:12<00:21, 3.02it/s]");
  // 43 in 12.25 s: 3.5102 it/s, 57 left: 16.2 s; 4.3 cells = 4 full + 2/8.
  EXPECT_EQ(progress_bar_line(state("sample", 43, 100, 12.25)),
            "sample  43%|████▎     | 43/100 [00:12<00:16, 3.51it/s]");
  EXPECT_EQ(progress_bar_line(state("sample", 100, 100, 25)),
            "sample 100%|██████████| 100/100 [00:25<00:00, 4.00it/s]");
  // Below one step a second: seconds per step, as tqdm and sd.cpp show it.
  EXPECT_EQ(progress_bar_line(state("decode", 2, 10, 5)),
            "decode  20%|██        | 2/10 [00:05<00:20, 2.50s/it]");
  // Before 0.2 s no rate is trusted.
  EXPECT_EQ(progress_bar_line(state("sample", 1, 50, 0.1)),
            "sample   2%|▏         | 1/50 [00:00<?, ?it/s]");
  // An unknown total (dopri5's adaptive steps): tqdm's counter form.
  EXPECT_EQ(progress_bar_line(state("sample", 7, -1, 3)), "sample 7it [00:03, 2.33it/s]");
}

TEST(Progress, TrainingLineShowsItemsAndExtra) {
  // A run resumed at 1000: 200 steps in 50 s = 4 it/s, 64 images a step = 256 img/s, 8800 left.
  ProgressState s = state("train", 1200, 10000, 50, 1000);
  s.items_per_unit = 64, s.unit = "img/s", s.extra = "loss 0.1234";
  EXPECT_EQ(progress_bar_line(s),
            "train  12%|█▏        | 1200/10000 [00:50<36:40, 4.00it/s, 256 img/s, loss 0.1234]");
  EXPECT_EQ(progress_plain_line(s),
            "train 1200/10000 (12%) loss 0.1234 4.00 it/s 256 img/s elapsed 0:50 eta 36:40");
}

TEST(Progress, PlainLine) {
  EXPECT_EQ(progress_plain_line(state("sample", 43, 100, 12.25)),
            "sample 43/100 (43%) 3.51 it/s elapsed 0:12 eta 0:16");
  EXPECT_EQ(progress_plain_line(state("sample", 1, 100, 0.1)), "sample 1/100 (1%) elapsed 0:00");
  EXPECT_EQ(progress_plain_line(state("sample", 3, -1, 2)),
            "sample 3/? (adaptive) 1.50 it/s elapsed 0:02");
  EXPECT_EQ(progress_plain_line(state("eval", 1, 4, 3725)),
            "eval 1/4 (25%) 3725.00 s/it elapsed 1:02:05 eta 3:06:15");
}

TEST(Progress, ThrottleEveryTenPercentOrThirtySeconds) {
  PlainThrottle t;
  EXPECT_TRUE(t.due(1, 100, 0));  // the first update
  t.shown(1, 0);
  EXPECT_FALSE(t.due(10, 100, 29.9));  // 9 % and 29.9 s: neither
  EXPECT_TRUE(t.due(11, 100, 1));      // 10 % more
  EXPECT_TRUE(t.due(2, 100, 30));      // 30 s later
  EXPECT_TRUE(t.due(100, 100, 0.5));   // the total
  t.shown(100, 0.5);
  EXPECT_FALSE(t.due(100, 100, 0.6));  // not twice
}

TEST(Progress, PlainDisplayOfAFastStage) {
  // 100 steps in 10 s: a line at the first step, at every 10 % and at the end; no '\r'.
  Recorder r;
  {
    Progress p("sample", 100, false, 0, r.io(false));
    for (int i = 1; i <= 100; ++i) {
      r.now = 0.1 * i;
      p.update(i);
    }
    p.finish();
  }
  std::vector<std::string> want_prefix;
  for (int k : {1, 11, 21, 31, 41, 51, 61, 71, 81, 91, 100})
    want_prefix.push_back("sample " + std::to_string(k) + "/100 ");
  ASSERT_EQ(r.out.size(), want_prefix.size());
  for (size_t i = 0; i < r.out.size(); ++i) {
    EXPECT_EQ(r.out[i].rfind(want_prefix[i], 0), 0u) << r.out[i];
    EXPECT_EQ(r.out[i].find('\r'), std::string::npos);
    EXPECT_EQ(r.out[i].back(), '\n');
  }
  EXPECT_EQ(r.out.back(), "sample 100/100 (100%) 10.00 it/s elapsed 0:10 eta 0:00\n");
}

TEST(Progress, PlainDisplayOfASlowStage) {
  // 1000 steps of 1 s: 10 % is 100 s, so a line every 30 s; finish() shows the last state.
  Recorder r;
  Progress p("train", 1000, false, 0, r.io(false));
  for (int i = 1; i <= 95; ++i) {
    r.now = i;
    p.update(i);
  }
  p.finish();
  ASSERT_EQ(r.out.size(), 5u);
  const long want[] = {1, 31, 61, 91, 95};
  for (size_t i = 0; i < 5; ++i)
    EXPECT_EQ(r.out[i].rfind("train " + std::to_string(want[i]) + "/1000 ", 0), 0u) << r.out[i];
}

TEST(Progress, TerminalRedrawsInPlaceAtMostTenTimesASecond) {
  Recorder r;
  Progress p("sample", 10, false, 0, r.io(true));
  for (int i = 1; i <= 10; ++i) {
    r.now = 0.0625 * i;  // 16 updates a second: steps 1, 3, 5, 7, 9 are drawn, and the last
    p.update(i);
  }
  p.finish();
  ASSERT_EQ(r.out.size(), 7u);  // six redraws and the closing "\n"
  for (size_t i = 0; i + 1 < r.out.size(); ++i) {
    EXPECT_EQ(r.out[i].front(), '\r');
    EXPECT_EQ(r.out[i].substr(r.out[i].size() - 3), "\033[K");
  }
  EXPECT_EQ(r.out[1].rfind("\rsample  30%|███       | 3/10 [00:00<", 0), 0u) << r.out[1];
  EXPECT_EQ(r.out[5], "\rsample 100%|██████████| 10/10 [00:01<00:00, 16.00it/s]\033[K");
  EXPECT_EQ(r.out.back(), "\n");
}

TEST(Progress, QuietShowsNothing) {
  Recorder r;
  Progress p("sample", 10, true, 0, r.io(true));
  p.update(5);
  p.finish();
  EXPECT_TRUE(r.out.empty());
}
