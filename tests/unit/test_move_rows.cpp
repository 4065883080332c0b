// Backend::move_rows on the CPU (fp32 and, where the CPU has bf16 units, bf16 acts) against a
// hand-written loop over the same index lists: gathers, scatters, both, zero rows, accumulation,
// fp32 rows on a bf16 backend, odd row lengths (the 16-lane tails), rows left alone; and the
// checks of layers::RowLists. The CUDA version is compared with this one in
// test_cuda_move_rows.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "models/row_lists.hpp"
#include "move_rows_ref.hpp"
#include "uvit/array.hpp"
#include "uvit/backend.hpp"
#include "uvit/error.hpp"

using namespace uvit;
using namespace uvit::test;
using VecF = std::vector<float>;

namespace {

std::vector<std::string> precisions() {
  std::vector<std::string> p = {"fp32"};
  if (cpu_has_bf16()) p.push_back("bf16");
  return p;
}

// An act buffer of the backend holding `h` (CPU backend memory is host memory).
struct ActBuf {
  ActBuf(Backend& be, const VecF& h)
      : be_(be), buf(be, std::max<size_t>(h.size(), 1) * 4), n(h.size()) {
    be.to_act(h.data(), buf.f32(), n);
  }
  VecF get() const {
    VecF h(n);
    be_.from_act(buf.f32(), h.data(), n);
    return h;
  }
  Backend& be_;
  DeviceBuffer buf;
  size_t n;
};

}  // namespace

TEST(MoveRows, MatchesTheRowLoop) {
  for (const std::string& prec : precisions()) {
    auto be = make_backend("cpu", prec);
    const bool bf16 = prec == "bf16";
    for (int len : {1, 13, 16, 35, 512}) {
      const int Rs = 41, Rd = 37, n = 23;
      const std::vector<int32_t> didx = distinct_rows(n, Rd, 1), sidx = any_rows(n, Rs, 2);
      const VecF src = act_values(size_t(Rs) * len, 3, bf16);
      const VecF dst0 = act_values(size_t(Rd) * len, 4, bf16);
      for (const MoveRowsCase& c : move_rows_cases()) {
        SCOPED_TRACE(prec + " len " + std::to_string(len) + " " + c.name);
        ActBuf s(*be, src), d(*be, dst0);
        const int32_t* di = c.use_didx ? didx.data() : nullptr;
        const int32_t* si = c.use_sidx ? sidx.data() : nullptr;
        be->move_rows(d.buf.f32(), di, c.zero ? nullptr : s.buf.f32(), si, n, len, c.accumulate);
        VecF want = dst0;
        move_rows_ref(want, di, c.zero ? nullptr : &src, si, n, len, c.accumulate, bf16);
        EXPECT_EQ(d.get(), want);  // bit for bit (also: the other rows untouched)
      }
    }
  }
}

TEST(MoveRows, Fp32RowsOnAnyBackend) {
  // act = false moves fp32 rows whatever the act type (FiT's RoPE rows).
  for (const std::string& prec : precisions()) {
    SCOPED_TRACE(prec);
    auto be = make_backend("cpu", prec);
    const int len = 10, n = 6;
    const VecF src = act_values(size_t(9) * len, 5, false);
    VecF dst(size_t(8) * len, -1.f);
    const std::vector<int32_t> didx = distinct_rows(n, 8, 6), sidx = any_rows(n, 9, 7);
    be->move_rows(dst.data(), didx.data(), src.data(), sidx.data(), n, len, false, false);
    VecF want(size_t(8) * len, -1.f);
    move_rows_ref(want, didx.data(), &src, sidx.data(), n, len, false, false);
    EXPECT_EQ(dst, want);
    be->move_rows(dst.data(), didx.data(), src.data(), sidx.data(), n, len, true, false);
    move_rows_ref(want, didx.data(), &src, sidx.data(), n, len, true, false);
    EXPECT_EQ(dst, want);
  }
}

TEST(MoveRows, RefusesAccumulatingZeros) {
  auto be = make_cpu_backend();
  VecF d(4);
  EXPECT_THROW(be->move_rows(d.data(), nullptr, nullptr, nullptr, 1, 4, true), Error);
  EXPECT_THROW(be->move_rows(d.data(), nullptr, d.data(), nullptr, -1, 4, false), Error);
  be->move_rows(d.data(), nullptr, nullptr, nullptr, 0, 4, false);  // nothing to move: fine
}

TEST(RowLists, ChecksAndUploadsTheLists) {
  auto be = make_cpu_backend();
  layers::RowLists lists(*be);
  const size_t a = lists.add({3, 0, 2}, 4, true, "dst");
  const size_t b = lists.add({1, 1, 1, 1}, 2, false, "src");  // a source may repeat rows
  lists.upload();
  EXPECT_EQ(std::vector<int32_t>(lists.at(a), lists.at(a) + 3), (std::vector<int32_t>{3, 0, 2}));
  EXPECT_EQ(std::vector<int32_t>(lists.at(b), lists.at(b) + 4), (std::vector<int32_t>(4, 1)));
  auto message = [&](std::vector<int32_t> ids, long rows, bool distinct) -> std::string {
    try {
      lists.add(ids, rows, distinct, "mdt: kept rows");
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(message({0, 4}, 4, false), "mdt: kept rows: row 4 at 1 is outside [0, 4)");
  EXPECT_EQ(message({-1}, 4, false), "mdt: kept rows: row -1 at 0 is outside [0, 4)");
  EXPECT_EQ(message({2, 1, 2}, 4, true),
            "mdt: kept rows: row 2 appears twice (destination rows must differ)");
  // A new, longer set replaces the old one (the buffer grows).
  lists.clear();
  std::vector<int32_t> big(1000);
  for (int i = 0; i < 1000; ++i) big[size_t(i)] = 999 - i;
  const size_t c = lists.add(big, 1000, true, "big");
  lists.upload();
  EXPECT_EQ(c, 0u);
  EXPECT_EQ(std::vector<int32_t>(lists.at(c), lists.at(c) + 1000), big);
}
