// cuDNN SDPA through cudnn-frontend's graph API (docs/gpu.md, "cuDNN attention"). One graph per
// (B, N, H, Dh, scale, kind) is built once (heuristics mode A, then the fallback list) and cached;
// the graphs share one grow-only workspace. The strides address Q, K, V in the fused qkv buffer
// (and dQ, dK, dV in dqkv) in place: element (b, h, n, d) of Q is qkv[b][n][h*Dh + d], so the
// [b, h, n, d] strides are (N*3D, Dh, 3D, 1) with K and V at offsets D and 2D (D = H*Dh); O and dO
// are (N*D, Dh, D, 1) and the statistics (H*N, N, 1, 1). Built only with cuDNN
// and NVRTC (UVIT_HAVE_CUDNN_SDPA); the frontend is compiled without its JSON support
// (CMakeLists.txt).
#include "backend/cuda/attention_cudnn.hpp"

#include <cstdio>

#ifdef UVIT_HAVE_CUDNN_SDPA
#include <cudnn_frontend.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <unordered_map>

#include "backend/cuda/cuda_common.hpp"
#include "backend/cuda/cudnn_handle.hpp"
#include "uvit/error.hpp"
#endif

namespace uvit::cuda {

#ifdef UVIT_HAVE_CUDNN_SDPA
namespace {

namespace fe = cudnn_frontend;

// Tensor uids of the graphs' variant packs.
enum Uid : int64_t { kQ = 1, kK, kV, kO, kStats, kdO, kdQ, kdK, kdV };

enum class Kind { kInference, kTraining, kBackward };

const char* kind_name(Kind k) {
  return k == Kind::kInference ? "forward" : k == Kind::kTraining ? "forward+stats" : "backward";
}

// B, N, H, Dh, bits of the scale, kind
using Key = std::tuple<int, int, int, int, uint32_t, int>;

std::string shape_name(Kind k, int B, int N, int H, int Dh) {
  return cat("cuDNN SDPA ", kind_name(k), " B=", B, " N=", N, " H=", H, " Dh=", Dh);
}

// cuDNN's messages may span lines; ours are one line.
std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

struct Entry {
  std::shared_ptr<fe::graph::Graph> graph;  // nullptr: cuDNN turned the shape down
  int64_t workspace = 0;
};

// The [b, h, n, d] dims and strides of a tensor inside a row of `row` elements per token.
fe::graph::Tensor_attributes bhnd(const char* name, int64_t uid, int B, int N, int H, int Dh,
                                  int64_t row) {
  return fe::graph::Tensor_attributes()
      .set_name(name)
      .set_uid(uid)
      .set_dim({B, H, N, Dh})
      .set_stride({int64_t(N) * row, Dh, row, 1});
}

std::shared_ptr<fe::graph::Graph> make_graph(Kind kind, int B, int N, int H, int Dh, float scale) {
  auto g = std::make_shared<fe::graph::Graph>();
  g->set_io_data_type(fe::DataType_t::BFLOAT16)
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  const int64_t D = int64_t(H) * Dh, row3 = 3 * D;
  auto Q = g->tensor(bhnd("Q", kQ, B, N, H, Dh, row3));
  auto K = g->tensor(bhnd("K", kK, B, N, H, Dh, row3));
  auto V = g->tensor(bhnd("V", kV, B, N, H, Dh, row3));
  const std::vector<int64_t> sdim{B, H, N, 1}, sstride{int64_t(H) * N, N, 1, 1};
  if (kind != Kind::kBackward) {
    auto opts = fe::graph::SDPA_attributes()
                    .set_name("sdpa")
                    .set_generate_stats(kind == Kind::kTraining)
                    .set_attn_scale(scale);
    auto [O, stats] = g->sdpa(Q, K, V, opts);
    O->set_output(true).set_uid(kO).set_dim({B, H, N, Dh}).set_stride({int64_t(N) * D, Dh, D, 1});
    if (stats)
      stats->set_output(true)
          .set_uid(kStats)
          .set_data_type(fe::DataType_t::FLOAT)
          .set_dim(sdim)
          .set_stride(sstride);
    return g;
  }
  auto O = g->tensor(bhnd("O", kO, B, N, H, Dh, D));
  auto dO = g->tensor(bhnd("dO", kdO, B, N, H, Dh, D));
  auto stats = g->tensor(fe::graph::Tensor_attributes()
                             .set_name("stats")
                             .set_uid(kStats)
                             .set_dim(sdim)
                             .set_stride(sstride)
                             .set_data_type(fe::DataType_t::FLOAT));
  // Deterministic: training resumes bit-identically (docs/gpu.md), as with our flash backward.
  auto opts = fe::graph::SDPA_backward_attributes()
                  .set_name("sdpa_backward")
                  .set_attn_scale(scale)
                  .set_deterministic_algorithm(true);
  auto [dQ, dK, dV] = g->sdpa_backward(Q, K, V, O, dO, stats, opts);
  const std::vector<int64_t> dim{B, H, N, Dh}, stride{int64_t(N) * row3, Dh, row3, 1};
  dQ->set_output(true).set_uid(kdQ).set_dim(dim).set_stride(stride);
  dK->set_output(true).set_uid(kdK).set_dim(dim).set_stride(stride);
  dV->set_output(true).set_uid(kdV).set_dim(dim).set_stride(stride);
  return g;
}

class DnnAttention final : public CudnnAttention {
 public:
  explicit DnnAttention(cudnnHandle_t h) : h_(h) {}
  ~DnnAttention() override {
    graphs_.clear();  // plans before the handle
    cudnnDestroy(h_);
  }

  size_t workspace_bytes() const override { return ws_.bytes(); }

  bool forward(const void* qkv, void* out, float* lse, int B, int N, int H, int Dh,
               float scale) override {
    if (!aligned16(qkv) || !aligned16(out)) return false;
    const Kind kind = lse ? Kind::kTraining : Kind::kInference;
    const size_t e = 2, D = size_t(H) * Dh;
    const char* q = static_cast<const char*>(qkv);
    std::unordered_map<int64_t, void*> pack{{kQ, const_cast<char*>(q)},
                                            {kK, const_cast<char*>(q + D * e)},
                                            {kV, const_cast<char*>(q + 2 * D * e)},
                                            {kO, out}};
    if (lse) pack[kStats] = lse;
    return run(kind, B, N, H, Dh, scale, pack);
  }

  bool backward(const void* dout, const void* qkv, const void* out, const float* lse, void* dqkv,
                int B, int N, int H, int Dh, float scale) override {
    if (!aligned16(dout) || !aligned16(qkv) || !aligned16(out) || !aligned16(dqkv)) return false;
    const size_t e = 2, D = size_t(H) * Dh;
    auto* q = const_cast<char*>(static_cast<const char*>(qkv));
    auto* dq = static_cast<char*>(dqkv);
    std::unordered_map<int64_t, void*> pack{{kQ, q},
                                            {kK, q + D * e},
                                            {kV, q + 2 * D * e},
                                            {kdQ, dq},
                                            {kdK, dq + D * e},
                                            {kdV, dq + 2 * D * e},
                                            {kdO, const_cast<void*>(dout)},
                                            {kO, const_cast<void*>(out)},
                                            {kStats, const_cast<float*>(lse)}};
    return run(Kind::kBackward, B, N, H, Dh, scale, pack);
  }

 private:
  bool run(Kind kind, int B, int N, int H, int Dh, float scale,
           std::unordered_map<int64_t, void*>& pack) {
    const Entry& en = entry(kind, B, N, H, Dh, scale);
    if (!en.graph) return false;
    void* ws = ws_.reserve(size_t(en.workspace));
    const auto st = en.graph->execute(h_, pack, ws);
    if (st.is_bad())
      fail(shape_name(kind, B, N, H, Dh), ": execute failed: ", one_line(st.err_msg));
    return true;
  }

  // The cached graph for a shape; built on first use. A shape that cuDNN does not support (no
  // engine in mode A or the fallback list, or its support check says no) is cached as such and
  // said once.
  const Entry& entry(Kind kind, int B, int N, int H, int Dh, float scale) {
    uint32_t sbits;
    std::memcpy(&sbits, &scale, 4);
    const Key key{B, N, H, Dh, sbits, int(kind)};
    auto it = graphs_.find(key);
    if (it != graphs_.end()) return it->second;
    Entry en;
    auto g = make_graph(kind, B, N, H, Dh, scale);
    const std::string what = shape_name(kind, B, N, H, Dh);
    // Steps that say "not supported here": the path falls back to ours.
    fe::error_t st = g->validate();
    if (st.is_good()) st = g->build_operation_graph(h_);
    if (st.is_good()) st = g->create_execution_plans({fe::HeurMode_t::A, fe::HeurMode_t::FALLBACK});
    if (st.is_good()) st = g->check_support(h_);
    if (st.is_bad()) {
      std::fprintf(stderr, "uvit cuda: %s not supported (%s); using our attention kernels\n",
                   what.c_str(), one_line(st.err_msg).c_str());
      return graphs_.emplace(key, std::move(en)).first->second;
    }
    // A supported graph that fails to build or size is an error.
    st = g->build_plans(fe::BuildPlanPolicy_t::HEURISTICS_CHOICE);
    if (st.is_bad()) fail(what, ": build_plans failed: ", one_line(st.err_msg));
    st = g->get_workspace_size(en.workspace);
    if (st.is_bad()) fail(what, ": get_workspace_size failed: ", one_line(st.err_msg));
    en.graph = std::move(g);
    return graphs_.emplace(key, std::move(en)).first->second;
  }

  cudnnHandle_t h_;
  GrowBuffer ws_{"cuDNN attention workspace"};
  std::map<Key, Entry> graphs_;
};

}  // namespace

std::unique_ptr<CudnnAttention> make_cudnn_attention(cudaStream_t stream) {
  cudnnHandle_t h = create_cudnn_handle(stream, "UVIT_ATTENTION=cudnn runs our attention kernels");
  if (!h) return nullptr;
  try {
    return std::make_unique<DnnAttention>(h);
  } catch (...) {
    cudnnDestroy(h);
    throw;
  }
}

#else

std::unique_ptr<CudnnAttention> make_cudnn_attention(cudaStream_t) {
  std::fprintf(stderr,
               "uvit cuda: this build has no cuDNN SDPA (cuDNN or NVRTC not found); "
               "UVIT_ATTENTION=cudnn runs our attention kernels\n");
  return nullptr;
}

#endif

}  // namespace uvit::cuda
