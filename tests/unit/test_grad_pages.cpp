// train.zero=2's gradient (src/train/grad_pages.hpp): zero when mapped and after clear(); a
// reduced range gives back exactly the whole pages all of whose floats are reduced (mincore: not
// resident), a page shared with an unreduced range stays until that range is reduced too, and the
// values of the pages kept are kept.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vector>

#include "train/grad_pages.hpp"

namespace uvit {
namespace {

// Resident flag of each page of the n floats at p.
std::vector<int> resident(const float* p, size_t n) {
  const size_t page = size_t(sysconf(_SC_PAGESIZE)), pages = (n * 4 + page - 1) / page;
  std::vector<unsigned char> v(pages);
  EXPECT_EQ(mincore(const_cast<float*>(p), pages * page, v.data()), 0);
  std::vector<int> r;
  for (unsigned char c : v) r.push_back(c & 1);
  return r;
}

TEST(GradPages, ReleasesWholeReducedPagesOnly) {
  const size_t F = size_t(sysconf(_SC_PAGESIZE)) / 4, n = 10 * F + 100;  // 11 pages, the last short
  GradPages g(n);
  float* p = g.data();
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(p[i], 0.f);
  for (size_t i = 0; i < n; ++i) p[i] = 1.f;
  EXPECT_EQ(resident(p, n), std::vector<int>(11, 1));
  g.reduced(0, 2 * F + 10);  // page 2 is shared with floats not reduced yet
  EXPECT_EQ(resident(p, n), (std::vector<int>{0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1}));
  g.reduced(5 * F + 3, n);  // to the end: the short last page counts as whole
  EXPECT_EQ(resident(p, n), (std::vector<int>{0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0}));
  g.reduced(2 * F + 10, 3 * F);  // completes page 2
  EXPECT_EQ(resident(p, n), (std::vector<int>{0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0}));
  for (size_t i = 3 * F; i < 6 * F; ++i) ASSERT_EQ(p[i], 1.f) << i;  // the unreduced pages kept
  g.reduced(3 * F + 1, 5 * F + 3);  // pages 4, 5 (page 3 still holds float 3F)
  EXPECT_EQ(resident(p, n), (std::vector<int>{0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(p[3 * F], 1.f);
  g.clear();  // a new backward: everything released and zero, no range reduced
  EXPECT_EQ(resident(p, n), std::vector<int>(11, 0));
  p[0] = 2.f;
  g.reduced(1, F);  // float 0 is not reduced: page 0 stays
  EXPECT_EQ(p[0], 2.f);
  for (size_t i = 1; i < n; ++i) ASSERT_EQ(p[i], 0.f) << i;
}

}  // namespace
}  // namespace uvit
