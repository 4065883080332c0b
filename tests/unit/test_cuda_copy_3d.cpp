// Backend::copy_3d on CUDA (fp32 and bf16 acts, and fp32 elements on either) against the CPU
// version, bit for bit (both copy bits), on copy_3d_cases.hpp's layouts: LaVin's joint sequence,
// broadcast class tokens, ST-VAE's frame blocks inside channel rows, and element offsets that take
// the kernel's 16-, 4- and 2-byte paths; elements outside the copied rows untouched. Skips without
// a GPU. The kernel's access width is chosen on the host (copy_unit.hpp): tested without a GPU.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "backend/cuda/copy_unit.hpp"
#include "copy_3d_cases.hpp"
#include "gpu_compare.hpp"
#include "move_rows_ref.hpp"
#include "uvit/backend.hpp"
#include "uvit/error.hpp"

using namespace uvit;
using namespace uvit::test;
using VecF = std::vector<float>;

namespace {

// copy_3d of case `c` on backend `be` over host values `src`, `dst0`: the whole dst buffer after.
VecF run(Backend& be, const Copy3dCase& c, const VecF& src, const VecF& dst0, bool act) {
  const size_t e = act ? be.act_bytes() : 4;
  DeviceBuffer s32(be, src.size() * 4), d32(be, dst0.size() * 4);
  DeviceBuffer s(be, src.size() * e), d(be, dst0.size() * e);
  be.upload(s32.f32(), src.data(), src.size() * 4);
  be.upload(d32.f32(), dst0.data(), dst0.size() * 4);
  auto in = [&](DeviceBuffer& to, DeviceBuffer& from, size_t n) {
    if (act)
      be.to_act(from.f32(), to.f32(), n);
    else
      be.copy(to.f32(), from.f32(), n);
  };
  in(s, s32, src.size());
  in(d, d32, dst0.size());
  auto at = [&](DeviceBuffer& b, long off) {
    return act ? be.act_at(b.f32(), size_t(off)) : b.f32() + off;
  };
  be.copy_3d(at(d, c.dst_off), c.ld_dst, c.bs_dst, at(s, c.src_off), c.ld_src, c.bs_src, c.blocks,
             c.rows, c.cols, act);
  if (act)
    be.from_act(d.f32(), d32.f32(), dst0.size());
  else
    be.copy(d32.f32(), d.f32(), dst0.size());
  VecF h(dst0.size());
  be.download(h.data(), d32.f32(), h.size() * 4);
  return h;
}

}  // namespace

TEST(CudaCopy3d, MatchesTheCpu) {
  REQUIRE_CUDA();
  auto cpu = make_cpu_backend();
  for (const char* prec : {"fp32", "bf16"}) {
    auto be = make_backend("cuda", prec);
    for (bool act : {true, false}) {
      const bool bf16 = act && std::string(prec) == "bf16";
      for (const Copy3dCase& c : copy_3d_cases()) {
        const std::string tag = std::string(prec) + (act ? " act " : " fp32 ") + c.name;
        SCOPED_TRACE(tag);
        // Values exact in bf16, so the fp32 CPU copy is the reference of both act types.
        const VecF src = act_values(size_t(c.src_size()), 1, bf16);
        const VecF dst0 = act_values(size_t(c.dst_size()), 2, bf16);
        compare("copy_3d " + tag, run(*be, c, src, dst0, act), run(*cpu, c, src, dst0, false), 0);
      }
    }
  }
}

// The CUDA backend refuses the shapes the CPU refuses (check_copy_3d, before any launch), with the
// same one-line message, and a bias gradient's row stride under its width likewise.
TEST(CudaCopy3d, RefusesWhatTheCpuRefuses) {
  REQUIRE_CUDA();
  auto cpu = make_cpu_backend();
  auto gpu = make_backend("cuda", "bf16");
  auto message = [](Backend& be, long ldd, long bsd, long lds, long bss, long nb, long r, long c) {
    DeviceBuffer d(be, 64 * 4), s(be, 64 * 4);
    try {
      be.copy_3d(d.f32(), ldd, bsd, s.f32(), lds, bss, nb, r, c);
      be.synchronize();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const long bad[][7] = {{4, 4, 4, 4, 2, 2, 4},
                         {2, 8, 4, 8, 2, 2, 4},
                         {4, 0, 4, 0, 2, 1, 4},
                         {4, 8, -4, 8, 2, 2, 4},
                         {4, 8, 4, 8, -1, 2, 4}};
  for (const auto& a : bad) {
    const std::string want = message(*cpu, a[0], a[1], a[2], a[3], a[4], a[5], a[6]);
    EXPECT_FALSE(want.empty());
    EXPECT_EQ(message(*gpu, a[0], a[1], a[2], a[3], a[4], a[5], a[6]), want);
  }
  EXPECT_EQ(message(*gpu, 4, 8, 4, 8, 2, 2, 4), "");  // accepted: rows inside blocks
  auto bias = [](Backend& be) {
    DeviceBuffer dy(be, 64 * 4), db(be, 64 * 4);
    try {
      be.bias_grad_strided(dy.f32(), 7, db.f32(), 2, 8);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(bias(*gpu), bias(*cpu));
  EXPECT_NE(bias(*cpu), "");
}

// The access width copy_3d.cu launches with (copy_unit): the widest of 16, 4 and 2 bytes dividing
// the strides, the row length and both pointers; by hand, then over the cases above, which must
// reach every width the kernel is instantiated for (16, 4 and 2 bytes with bf16 acts, 16 and 4
// with fp32 elements) so that MatchesTheCpu runs each on a GPU. Device buffers start 256-byte
// aligned (cudaMalloc). No GPU needed (so not a Cuda* test: the device script leaves it out).
TEST(CopyUnit, Copy3dWidestAlignedUnitAndTheCasesReachEveryWidth) {
  using cuda::copy_unit;
  EXPECT_EQ(copy_unit({0, 0, 1152 * 2, 256, 512}), 16u);  // broadcast strides, aligned rows
  EXPECT_EQ(copy_unit({24 * 4, 8 * 4, 8 * 4, 5 * 8 * 4, 256, 256 + 8}), 4u);  // no 8-byte unit
  EXPECT_EQ(copy_unit({48, 16, 6, 256, 256}), 2u);                            // 3 bf16
  EXPECT_EQ(copy_unit({1152 * 2, 1152 * 2, 256 + 2, 512}), 2u);  // a pointer 2 bytes past
  EXPECT_EQ(copy_unit({1152 * 2, 1152 * 2, 256 + 4, 512}), 4u);
  EXPECT_EQ(copy_unit({1152 * 2, 1152 * 2 + 4, 256, 512}), 4u);  // one stride
  std::set<size_t> units[2];
  for (int bf16 = 0; bf16 < 2; ++bf16) {
    const size_t e = bf16 ? 2 : 4, base = 256;
    for (const Copy3dCase& c : copy_3d_cases())
      units[bf16].insert(copy_unit({size_t(c.ld_dst) * e, size_t(c.bs_dst) * e,
                                    size_t(c.ld_src) * e, size_t(c.bs_src) * e, size_t(c.cols) * e,
                                    base + size_t(c.dst_off) * e, base + size_t(c.src_off) * e}));
  }
  EXPECT_EQ(units[0], (std::set<size_t>{4, 16}));
  EXPECT_EQ(units[1], (std::set<size_t>{2, 4, 16}));
}
