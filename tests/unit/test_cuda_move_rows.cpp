// Backend::move_rows on CUDA (fp32 and bf16 acts, and fp32 rows) against the row loop of
// move_rows_ref.hpp, bit for bit: copies move bits, an accumulation is one fp32 add rounded once on
// both sides. Row lengths and pointer offsets that take each of the kernel's paths (16-, 4- and
// 2-byte units; packed and scalar adds), and MDT-XL/2's masked-pass shape (B 16 x 179 kept of 256
// tokens, width 1152). Skips without a GPU.
#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "backend/cuda/copy_unit.hpp"
#include "gpu_compare.hpp"
#include "move_rows_ref.hpp"
#include "uvit/array.hpp"
#include "uvit/backend.hpp"

using namespace uvit;
using namespace uvit::test;
using VecF = std::vector<float>;

namespace {

// `h` as act elements (bf16 or fp32) at element offset `off` of a new device buffer. fp32 rows
// on a bf16 backend are offset in floats (act_at would offset them by 2-byte elements and misalign
// the kernel's float accesses: a fault, not a mismatch).
struct DevAct {
  DevAct(Backend& be, const VecF& h, size_t off, bool bf16)
      : be_(be), bf16_(bf16), buf(be, (h.size() + off) * 4 + 16), n(h.size()) {
    p = bf16 ? be.act_at(buf.f32(), off) : buf.f32() + off;
    if (bf16) {
      std::vector<uint16_t> b(n);
      for (size_t i = 0; i < n; ++i) b[i] = float_to_bf16(h[i]);
      be.upload(p, b.data(), n * 2);
    } else {
      be.upload(p, h.data(), n * 4);
    }
  }
  VecF get() const {
    VecF h(n);
    if (bf16_) {
      std::vector<uint16_t> b(n);
      be_.download(b.data(), p, n * 2);
      for (size_t i = 0; i < n; ++i) h[i] = bf16_to_float(b[i]);
    } else {
      be_.download(h.data(), p, n * 4);
    }
    return h;
  }
  Backend& be_;
  bool bf16_;
  DeviceBuffer buf;
  size_t n;
  float* p = nullptr;
};

struct DevIds {
  DevIds(Backend& be, const std::vector<int32_t>& h) : buf(be, h.size() * 4 + 4) {
    be.upload(buf.as(), h.data(), h.size() * 4);
  }
  const int32_t* p() const { return buf.as<int32_t>(); }
  DeviceBuffer buf;
};

// Source and destination rows, rows moved, row length and the element offset of both buffers.
struct Shape {
  int Rs, Rd, n, len;
  size_t off;
};
const Shape kShapes[] = {{41, 37, 23, 1, 0},       {41, 37, 23, 13, 0},
                         {41, 37, 23, 16, 1},      {41, 37, 23, 35, 3},
                         {41, 37, 23, 512, 0},     {16 * 256, 16 * 256, 16 * 179, 1152, 0},
                         {5000, 4000, 3999, 72, 2}};

}  // namespace

TEST(CudaMoveRows, MatchesTheRowLoop) {
  REQUIRE_CUDA();
  for (const char* prec : {"fp32", "bf16"}) {
    auto be = make_backend("cuda", prec);
    const bool bf16 = std::string(prec) == "bf16";
    for (const Shape sh : kShapes) {
      const std::vector<int32_t> didx = distinct_rows(sh.n, sh.Rd, 1);
      const std::vector<int32_t> sidx = any_rows(sh.n, sh.Rs, 2);
      const VecF src = act_values(size_t(sh.Rs) * sh.len, 3, bf16);
      const VecF dst0 = act_values(size_t(sh.Rd) * sh.len, 4, bf16);
      const DevIds ddi(*be, didx), dsi(*be, sidx);
      for (const MoveRowsCase& c : move_rows_cases()) {
        const std::string tag = std::string(prec) + " n " + std::to_string(sh.n) + " len " +
                                std::to_string(sh.len) + " off " + std::to_string(sh.off) + " " +
                                c.name;
        SCOPED_TRACE(tag);
        DevAct s(*be, src, sh.off, bf16), d(*be, dst0, sh.off, bf16);
        be->move_rows(d.p, c.use_didx ? ddi.p() : nullptr, c.zero ? nullptr : s.p,
                      c.use_sidx ? dsi.p() : nullptr, sh.n, sh.len, c.accumulate);
        VecF want = dst0;
        move_rows_ref(want, c.use_didx ? didx.data() : nullptr, c.zero ? nullptr : &src,
                      c.use_sidx ? sidx.data() : nullptr, sh.n, sh.len, c.accumulate, bf16);
        compare("move_rows " + tag, d.get(), want, 0);
      }
      // fp32 rows on this backend (act = false), copied and added.
      const VecF src32 = act_values(size_t(sh.Rs) * sh.len, 5, false);
      const VecF dst32 = act_values(size_t(sh.Rd) * sh.len, 6, false);
      DevAct s(*be, src32, sh.off, false), d(*be, dst32, sh.off, false);
      VecF want = dst32;
      for (bool acc : {false, true}) {
        be->move_rows(d.p, ddi.p(), s.p, dsi.p(), sh.n, sh.len, acc, false);
        move_rows_ref(want, didx.data(), &src32, sidx.data(), sh.n, sh.len, acc, false);
        compare(std::string("move_rows fp32 rows ") + prec + (acc ? " add" : " copy"), d.get(),
                want, 0);
      }
    }
  }
}

// The access widths move_rows.cu launches with (copy_unit over the row bytes and both pointers):
// over the shapes above, act rows of either type and fp32 rows, the copies reach every width the
// kernel is instantiated for (16, 4, 2 bytes) and the accumulation both its 16-byte packs and
// its single elements, so MatchesTheRowLoop runs each on a GPU. Device buffers start 256-byte
// aligned (cudaMalloc). No GPU needed (so not a Cuda* test: the device script leaves it out).
TEST(CopyUnit, MoveRowsShapesReachEveryWidth) {
  using cuda::copy_unit;
  std::set<size_t> copies, adds;
  for (const Shape& sh : kShapes)
    for (size_t e : {2, 4}) {  // bf16 or fp32 elements (fp32 rows are offset in floats)
      const size_t row = size_t(sh.len) * e, p = 256 + sh.off * e;
      copies.insert(copy_unit({row, p, p}));
      copies.insert(copy_unit({row, p, 0}));  // zero rows (no source)
      adds.insert(copy_unit({row, p, p}) == 16 ? 16 : e);
    }
  EXPECT_EQ(copies, (std::set<size_t>{2, 4, 16}));
  EXPECT_EQ(adds, (std::set<size_t>{2, 4, 16}));
}
