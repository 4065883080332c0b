// The MPI communicator under mpirun -np W (W = 2, 3, 4, oversubscribed): the ordered reduction
// equals the sequential left-to-right sum over all logical buffers bit for bit (n not divisible
// by W, values of mixed magnitude, 1 and 2 buffers per rank, pieces that cut the shards, in
// place or not, whole or cut into ranges as train.overlap exchanges them) and the in-place
// all-gather gives every rank the whole sum; ZeRO-1's piecewise
// gather of a sharded vector gives the whole vector, the control collectives work, and the
// trainer's replica check sees one changed float; the weights hash it shares with the ranks' check
// after loading gives FNV-1a's value, also read from a device through its 4 MB pieces.
// Exit status: the number of failed checks (every rank checks on its own).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "uvit/autoencoder.hpp"
#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/dist.hpp"
#include "uvit/error.hpp"
#include "uvit/train.hpp"
// Internal (src/ is not on this test's include path): the hash the ranks compare.
#include "../../src/dist/weights_hash.hpp"

using namespace uvit;

namespace {
int failures = 0;
void check(bool ok, int rank, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "rank %d: FAIL: %s\n", rank, what);
  ++failures;
}

class Items28 : public Dataset {  // fmnist-shaped items (the trainer is built, not trained)
 public:
  int64_t size() const override { return 64; }
  std::array<int64_t, 3> item_shape() const override { return {1, 28, 28}; }
  int num_classes() const override { return 10; }
  int64_t get(int64_t i, float* x, float*, const DrawRng&) const override {
    std::fill(x, x + 28 * 28, 0.5f);
    return i % 10;
  }
  std::string describe() const override { return "items28"; }
};

// The replica check hashes the weights through a host buffer of 2^20 floats: with more
// parameters than that (1.50 M), a change in one float of the last, shorter piece of rank W-1's
// weights or EMA is seen on every rank, naming rank W-1.
void replica_check(Comm& c) {
  const int r = c.rank(), W = c.size();
  Config cfg = load_config("fmnist_uvit_tiny");
  cfg.json["train"]["batch_size"] = 2 * W;
  auto be = make_cpu_backend();
  Trainer tr(cfg, *be, std::make_shared<Items28>(), "", &c);
  tr.init();
  const size_t P = tr.net().num_params();
  check(P > (size_t(1) << 20) && P % (size_t(1) << 20) != 0, r,
        "replica check: the weights fit in one piece");
  auto diverges = [&] {
    try {
      tr.check_replicas();
      return std::string();
    } catch (const Error& e) {
      return std::string(e.what());
    }
  };
  check(diverges().empty(), r, "replica check: equal replicas reported as different");
  for (Network* n : {&tr.net(), &tr.ema_net()}) {
    float* last = n->params() + P - 1;
    const float keep = *last;
    if (r == W - 1) *last = std::nextafter(keep, 1.f);
    const std::string msg = diverges();
    check(msg.find("the weights of rank " + std::to_string(W - 1) + " differ") != std::string::npos,
          r, "replica check: one changed float of the last piece not reported");
    *last = keep;
  }
  check(diverges().empty(), r, "replica check: restored replicas reported as different");
  if (r == 0 && failures == 0)
    std::printf("ok: the replica check sees one float of %zu changed on rank %d\n", P, W - 1);
}
// FNV-1a over 64-bit little-endian words, hand-computed (Python) for the floats 1, 2, 3 (the last
// word padded with zero bytes); a device's floats (the simulated one: downloads in pieces of 2^20
// floats, here cut 3 floats into the second) hash as the same floats in host memory (the CPU's
// buffer, hashed in place).
void weights_hash_values(int r) {
  const float three[3] = {1.f, 2.f, 3.f};
  check(hash_bytes(three, sizeof three, kWeightsHashSeed) == 0x9a68a086c508b8fbull, r,
        "weights hash: FNV-1a of 1, 2, 3");
  const size_t n = (size_t(1) << 20) + 3;
  std::vector<float> host(n);
  for (size_t i = 0; i < n; ++i) host[i] = float(i % 977) * 0.25f - 3.f;
  const uint64_t want = hash_bytes(host.data(), n * 4, kWeightsHashSeed);
  for (const char* name : {"simdev", "cpu"}) {
    auto be = make_backend(name);
    float* p = be->alloc(n);
    be->upload(p, host.data(), n * 4);
    check(hash_backend_floats(*be, p, n, kWeightsHashSeed) == want, r,
          "weights hash: a backend's floats differ from the same host floats");
    be->free_bytes(p);
  }
  if (r == 0 && failures == 0)
    std::printf("ok: the weights hash is FNV-1a, the same on the host, the CPU and a device\n");
}

// The autoencoder's hash covers every weight it loaded: FNV-1a of the state_dict's floats one
// after another (a kl-f8 layout at width 32), and one float changed changes it.
void autoencoder_hash(int r) {
  AutoencoderConfig cfg;
  cfg.ch = 32;
  cfg.ch_mult = {1, 1, 2, 2};
  cfg.num_res_blocks = 1;
  NamedArrays sd;
  std::vector<float> all;
  for (const auto& [name, shape] : autoencoder_param_shapes(cfg)) {
    size_t n = 1;
    for (int64_t d : shape) n *= size_t(d);
    std::vector<float> v(n);
    for (float& x : v) x = float(all.size() % 1009) * 1e-3f - 0.5f, all.push_back(x);
    sd.emplace_back(name, Array::from_f32(shape, v.data()));
  }
  const uint64_t a = Autoencoder(cfg, sd, "ae").weights_hash();
  check(a == hash_bytes(all.data(), all.size() * 4, kWeightsHashSeed), r,
        "autoencoder hash: not FNV-1a of its weights in state_dict order");
  sd.back().second.as<float>()[0] += 1.f;
  check(Autoencoder(cfg, sd, "ae").weights_hash() != a, r,
        "autoencoder hash: one changed float not seen");
  if (r == 0 && failures == 0)
    std::printf("ok: the autoencoder's hash covers its %zu weights\n", all.size());
}
}  // namespace

int main() {
  Comm& c = world();
  const int W = c.size(), r = c.rank();
  check(launched_by_mpi() && c.name() == "mpi", r, "not started as an MPI rank");
  // The reduction in pieces (UVIT_REDUCE_PIECE floats of a shard per round) that cut the shards
  // at odd places, pieces of one float, a shard longer than the piece and shorter, last shards cut
  // short or empty (5 floats over W shards of 16), buffers further apart than n, and the result
  // written in place into the first buffer or into a buffer of its own: always the sequential
  // sum's bits.
  struct Case {
    size_t n;
    const char* piece;  // nullptr: the default (16 MB of receive buffer)
  };
  for (const Case& cs : {Case{5, "1"}, Case{37, "1"}, Case{37, "3"}, Case{1003, "7"},
                         Case{100003, "1000"}, Case{100003, "4099"}, Case{100003, nullptr}})
    for (int k : {1, 2})
      for (const int mode : {0, 1, 2, 3}) {  // in place or apart; whole or in ranges
        const bool in_place = mode % 2 == 0, ranged = mode >= 2;
        if (cs.piece)
          setenv("UVIT_REDUCE_PIECE", cs.piece, 1);
        else
          unsetenv("UVIT_REDUCE_PIECE");
        const size_t n = cs.n, stride = n + 3;
        const size_t sh = shard_size(n, W);  // as the trainer
        // Every rank makes all W*k logical buffers from one seed and keeps its own.
        std::mt19937 gen(11);
        std::uniform_real_distribution<float> u(-1, 1);
        std::vector<float> all(size_t(W) * k * stride, -7.f);
        for (int b = 0; b < W * k; ++b)
          for (size_t e = 0; e < n; ++e)
            all[size_t(b) * stride + e] =
                u(gen) * std::ldexp(1.f, int((e * 7 + size_t(b)) % 48) - 24);
        std::vector<float> mine(all.begin() + long(size_t(r) * k * stride),
                                all.begin() + long(size_t(r + 1) * k * stride));
        const size_t len = shard_len(n, sh, r);
        std::vector<float> own(len + 1, -9.f), full(n, -5.f);
        float* at = len ? mine.data() + size_t(r) * sh : mine.data();
        float* out = in_place ? mine.data() : full.data();
        if (!ranged) {
          c.reduce_scatter_ordered(mine.data(), k, n, stride, sh, in_place ? at : own.data());
        } else {
          // train.overlap's exchange: [0, n) cut at the same random points on every rank, the
          // ranges given from the top down (as backward announces them), each reduced and (in
          // place, the trainer's plain path) gathered at once.
          std::mt19937 cg(unsigned(n * 31 + size_t(k)));
          std::vector<size_t> cut{0, n};
          for (int i = 0; i < 6; ++i) cut.push_back(cg() % (n + 1));
          std::sort(cut.begin(), cut.end());
          for (size_t i = cut.size() - 1; i > 0; --i) {
            c.reduce_scatter_range(mine.data(), k, n, stride, sh, cut[i - 1], cut[i],
                                   in_place ? at : own.data());
            if (in_place) c.allgather_range(out, n, sh, cut[i - 1], cut[i]);
          }
        }
        if (!in_place) {
          std::copy(own.begin(), own.begin() + long(len), full.begin() + long(len ? r * sh : 0));
          check(own[len] == -9.f, r, "reduce_scatter_ordered wrote past the shard");
        }
        if (!ranged || !in_place) c.allgather_shards(out, n, sh);
        size_t bad = 0, reassoc = 0;
        for (size_t e = 0; e < n; ++e) {
          float s = all[e];
          for (int b = 1; b < W * k; ++b) s += all[size_t(b) * stride + e];
          bad += std::memcmp(&s, &out[e], 4) != 0;
          if (W * k >= 3) {  // right to left, x0 + (x1 + (x2 + ...)), for contrast: must differ
            float q = all[size_t(W * k - 1) * stride + e];
            for (int b = W * k - 2; b >= 0; --b) q = all[size_t(b) * stride + e] + q;
            reassoc += q != s;
          }
        }
        // In place, the buffers' tails past n and the other buffers' ends are not written.
        if (in_place)
          bad += size_t(std::count(mine.begin() + long(n), mine.begin() + long(stride), -7.f) !=
                        long(stride - n)) +
                 size_t(!std::equal(mine.begin() + long(stride), mine.end(),
                                    all.begin() + long(size_t(r) * k * stride + stride)));
        char msg[200];
        std::snprintf(msg, sizeof msg,
                      "W %d k %d n %zu piece %s in place %d ranges %d: %zu of %zu elements "
                      "differ from the sequential sum",
                      W, k, n, cs.piece ? cs.piece : "default", int(in_place), int(ranged), bad, n);
        check(bad == 0, r, msg);
        if (W * k >= 3 && n > 1000)
          check(reassoc > 0, r, "another association gave the same bits everywhere");
        if (r == 0 && bad == 0)
          std::printf(
              "ok: W %d, %d buffers per rank, %zu floats, piece %s, %s%s: ordered reduction "
              "== sequential sum\n",
              W, k, n, cs.piece ? cs.piece : "default", in_place ? "in place" : "apart",
              ranged ? ", in ranges" : "");
      }
  unsetenv("UVIT_REDUCE_PIECE");
  // ZeRO-1's checkpoint stream: rank 0 receives a sharded vector piece by piece, equal to the whole
  // vector, for pieces smaller than, straddling and larger than the shards, a last shard cut
  // short by n or empty, and fetches that return the rank's own memory or the scratch buffer.
  for (const size_t n : {size_t(5), size_t(1000), size_t(1003), size_t(4097)}) {
    const size_t shard = shard_size(n, W);
    std::vector<float> whole(n);
    for (size_t e = 0; e < n; ++e) whole[e] = float(e) * 0.25f - 3.f;
    const size_t lo = std::min(n, size_t(r) * shard), hi = std::min(n, lo + shard);
    const std::vector<float> mine(whole.begin() + long(lo), whole.begin() + long(hi));
    for (const size_t chunk :
         {size_t(1), size_t(7), size_t(16), shard - 1, shard, shard + 3, n, n + 5}) {
      if (chunk == 0) continue;
      for (const bool copy : {false, true}) {
        std::vector<float> got;
        bool fetch_ok = true, sink_ok = true;
        gather_shards(
            c, n, shard, chunk,
            [&](size_t off, size_t count, float* scratch) -> const float* {
              fetch_ok = fetch_ok && count >= 1 && count <= chunk && off + count <= mine.size();
              if (!copy) return mine.data() + off;
              std::memcpy(scratch, mine.data() + off, count * 4);
              return scratch;
            },
            [&](const float* data, size_t count) {
              sink_ok = sink_ok && r == 0 && count >= 1 && count <= chunk;
              got.insert(got.end(), data, data + count);
            });
        char msg[160];
        std::snprintf(msg, sizeof msg, "gather_shards n %zu shard %zu chunk %zu copy %d", n, shard,
                      chunk, int(copy));
        check(fetch_ok && sink_ok && (r == 0 ? got == whole : got.empty()), r, msg);
      }
    }
  }
  if (r == 0 && failures == 0) std::printf("ok: gather_shards == the whole vector on rank 0\n");
  // Control collectives.
  check(any_rank(c, r == W - 1) && !any_rank(c, false), r, "any_rank");
  const std::vector<double> d = allgather_doubles(c, {double(r), 0.5});
  bool dok = d.size() == size_t(2 * W);
  for (int q = 0; q < W && dok; ++q) dok = d[2 * q] == q && d[2 * q + 1] == 0.5;
  check(dok, r, "allgather_doubles");
  int v = r == 1 ? 42 : 0;
  c.bcast(&v, sizeof v, 1);
  check(v == 42, r, "bcast from rank 1");
  std::vector<uint8_t> mine(size_t(r + 1), uint8_t('a' + r));  // r + 1 bytes: variable sizes
  const std::vector<uint8_t> g = c.gatherv_bytes(mine.data(), mine.size(), 0);
  if (r == 0) {
    std::vector<uint8_t> want;
    for (int q = 0; q < W; ++q) want.insert(want.end(), size_t(q + 1), uint8_t('a' + q));
    check(g == want, r, "gatherv_bytes on the root");
  } else {
    check(g.empty(), r, "gatherv_bytes off the root");
  }
  check(c.local_rank() == r, r, "local rank on one node");
  replica_check(c);
  weights_hash_values(r);
  autoencoder_hash(r);
  c.barrier();
  if (r == 0 && failures == 0) std::printf("ok: bcast, gatherv, any, allgather on %d ranks\n", W);
  return failures;
}
