// Backend::copy_3d on the CPU (fp32 and, where the CPU has bf16 units, bf16 acts; fp32 elements
// on either) against the loop of per-block copy_act_2d / copy_2d calls it replaces and the index
// formula, bit for bit, elements outside the copied rows untouched; and its argument checks. The
// CUDA version is compared with this one in test_cuda_copy_3d.cpp.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "copy_3d_cases.hpp"
#include "move_rows_ref.hpp"
#include "uvit/backend.hpp"
#include "uvit/error.hpp"

using namespace uvit;
using namespace uvit::test;
using VecF = std::vector<float>;

namespace {

// `h` as act elements (act) or fp32 elements of a backend buffer (CPU memory is host memory).
struct Buf {
  Buf(Backend& be, const VecF& h, bool act)
      : be_(be), act_(act), buf(be, h.size() * 4), n(h.size()) {
    if (act)
      be.to_act(h.data(), buf.f32(), n);
    else
      be.copy(buf.f32(), h.data(), n);
  }
  VecF get() const {
    VecF h(n);
    if (act_)
      be_.from_act(buf.f32(), h.data(), n);
    else
      be_.copy(h.data(), buf.f32(), n);
    return h;
  }
  Backend& be_;
  bool act_;
  DeviceBuffer buf;
  size_t n;
};

}  // namespace

TEST(Copy3d, MatchesTheLoopOfTwoDCopies) {
  std::vector<std::string> precs = {"fp32"};
  if (cpu_has_bf16()) precs.push_back("bf16");
  for (const std::string& prec : precs) {
    auto be = make_backend("cpu", prec);
    for (bool act : {true, false}) {
      const bool bf16 = act && prec == "bf16";
      for (const Copy3dCase& c : copy_3d_cases()) {
        SCOPED_TRACE(prec + (act ? " act " : " fp32 ") + c.name);
        const VecF src = act_values(size_t(c.src_size()), 1, bf16);
        const VecF dst0 = act_values(size_t(c.dst_size()), 2, bf16);
        Buf s(*be, src, act), got(*be, dst0, act), want(*be, dst0, act);
        const float* sp = act ? be->act_at(s.buf.f32(), c.src_off) : s.buf.f32() + c.src_off;
        auto at = [&](const Buf& d) {
          return act ? be->act_at(d.buf.f32(), c.dst_off) : d.buf.f32() + c.dst_off;
        };
        be->copy_3d(at(got), c.ld_dst, c.bs_dst, sp, c.ld_src, c.bs_src, c.blocks, c.rows, c.cols,
                    act);
        for (long b = 0; b < c.blocks; ++b) {
          float* d = act ? be->act_at(at(want), b * c.bs_dst) : at(want) + b * c.bs_dst;
          const float* x = act ? be->act_at(sp, b * c.bs_src) : sp + b * c.bs_src;
          if (act)
            be->copy_act_2d(d, c.ld_dst, x, c.ld_src, c.rows, c.cols);
          else
            be->copy_2d(d, c.ld_dst, x, c.ld_src, c.rows, c.cols);
        }
        // The CPU's copy_act_2d is copy_3d's one-block case, so also the plain index formula.
        VecF ref = dst0;
        for (long b = 0; b < c.blocks; ++b)
          for (long r = 0; r < c.rows; ++r)
            for (long j = 0; j < c.cols; ++j)
              ref[size_t(c.dst_off + b * c.bs_dst + r * c.ld_dst + j)] =
                  src[size_t(c.src_off + b * c.bs_src + r * c.ld_src + j)];
        const VecF g = got.get(), w = want.get();
        EXPECT_EQ(g, w);
        EXPECT_EQ(g, ref);
        EXPECT_NE(g, dst0);  // something was copied
      }
    }
  }
}

TEST(Copy3d, RefusesOverlappingOrNegativeShapes) {
  auto be = make_cpu_backend();
  VecF d(64), s(64);
  auto message = [&](long ldd, long bsd, long lds, long bss, long nb, long r, long c) {
    try {
      be->copy_3d(d.data(), ldd, bsd, s.data(), lds, bss, nb, r, c);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(message(4, 4, 4, 4, 2, 2, 4),
            "copy_3d: destination rows overlap (2 blocks 4 apart of 2 rows 4 apart of 4 elements)");
  EXPECT_EQ(message(2, 8, 4, 8, 2, 2, 4),
            "copy_3d: destination rows overlap (2 blocks 8 apart of 2 rows 2 apart of 4 elements)");
  EXPECT_EQ(message(4, 0, 4, 0, 2, 1, 4),
            "copy_3d: destination rows overlap (2 blocks 0 apart of 1 rows 4 apart of 4 elements)");
  EXPECT_EQ(message(4, 8, -4, 8, 2, 2, 4), "copy_3d: negative strides (dst 4, 8; src -4, 8)");
  EXPECT_EQ(message(4, 8, 4, 8, -1, 2, 4), "copy_3d: -1 blocks of 2 rows of 4 elements");
  // Both nestings are accepted, and an empty copy touches nothing.
  EXPECT_EQ(message(4, 8, 4, 8, 2, 2, 4), "");  // rows inside blocks
  EXPECT_EQ(message(8, 4, 4, 8, 2, 2, 4), "");  // blocks inside rows
  EXPECT_EQ(message(0, 0, 0, 0, 0, 5, 4), "");
}
