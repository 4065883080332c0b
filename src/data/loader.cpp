// Batches as a pure function of (seed, epoch, offset), and the background thread that prefetches
// them.
#include <algorithm>
#include <cstring>

#include "uvit/data.hpp"
#include "uvit/error.hpp"

namespace uvit {

int64_t Dataset::get_flipped(int64_t i, float* x, float* ctx, const DrawRng& rng) const {
  const int64_t label = get(i, x, ctx, rng);
  const auto s = item_shape();
  for (int64_t r = 0; r < s[0] * s[1]; ++r) std::reverse(x + r * s[2], x + (r + 1) * s[2]);
  return label;
}

const std::vector<float>& Dataset::empty_context() const {
  static const std::vector<float> none;
  return none;
}

Philox DrawRng::stream(uint32_t purpose) const {
  // Top 16 bits tag the data loader, next 8 the purpose, low 40 the epoch: other users of the run
  // seed (noise, timesteps) use small stream ids and cannot collide with these.
  uint64_t id = (uint64_t(0xDA7A) << 48) | (uint64_t(purpose & 0xFF) << 40) |
                (uint64_t(epoch) & ((uint64_t(1) << 40) - 1));
  return Philox(seed, id);
}

std::vector<int64_t> epoch_permutation(uint64_t seed, int64_t epoch, int64_t n, bool shuffle) {
  std::vector<int64_t> p(size_t(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) p[size_t(i)] = i;
  if (!shuffle) return p;
  Philox r = DrawRng{seed, epoch, 0}.stream(kRngPermutation);
  // Fisher-Yates from the back; j uniform in [0, i] from 64 random bits (multiply-shift).
  uint64_t blk = 0;
  for (int64_t i = n - 1; i > 0; --i, ++blk) {
    auto b = r.block(blk);
    uint64_t bits = uint64_t(b[0]) << 32 | b[1];
    auto j = int64_t((unsigned __int128)bits * uint64_t(i + 1) >> 64);
    std::swap(p[size_t(i)], p[size_t(j)]);
  }
  return p;
}

namespace {

int64_t batch_len(int64_t n, const LoaderOptions& o, int64_t offset) {
  return std::min(o.batch_size, n - offset);
}

// The state canonicalised so that it names a batch that exists.
LoaderState normalise(LoaderState st, int64_t n, const LoaderOptions& o) {
  if (st.offset < 0) st.offset = 0;
  bool past = o.drop_last ? st.offset + o.batch_size > n : st.offset >= n;
  if (past) ++st.epoch, st.offset = 0;
  return st;
}

// Permutations are cached per thread: recomputing one per batch would cost O(n).
const std::vector<int64_t>& cached_permutation(uint64_t seed, int64_t epoch, int64_t n,
                                               bool shuffle) {
  struct Cache {
    uint64_t seed = 0;
    int64_t epoch = -1, n = -1;
    bool shuffle = false;
    std::vector<int64_t> perm;
  };
  thread_local Cache c;
  if (c.seed != seed || c.epoch != epoch || c.n != n || c.shuffle != shuffle) {
    c.perm = epoch_permutation(seed, epoch, n, shuffle);
    c.seed = seed, c.epoch = epoch, c.n = n, c.shuffle = shuffle;
  }
  return c.perm;
}

// The state after the batch that starts at `st` (normalised), without building it.
LoaderState advance(LoaderState st, int64_t n, const LoaderOptions& o) {
  return normalise({st.seed, st.epoch, st.offset + batch_len(n, o, st.offset)}, n, o);
}

void check_options(const Dataset& ds, const LoaderOptions& o) {
  UVIT_CHECK(o.batch_size > 0, "loader: batch size must be positive, got ", o.batch_size);
  UVIT_CHECK(o.group >= 1 && o.take_first >= 0 && o.take_count >= 1 &&
                 o.take_first + o.take_count <= o.group,
             "loader: batches [", o.take_first, ", ", o.take_first + o.take_count,
             ") of each group of ", o.group, " are not a valid slice");
  UVIT_CHECK(ds.size() > 0, ds.describe(), ": dataset is empty");
  UVIT_CHECK(!o.drop_last || ds.size() >= o.batch_size, ds.describe(), ": ", ds.size(),
             " items, fewer than one batch of ", o.batch_size);
  UVIT_CHECK(o.p_uncond >= 0 && o.p_uncond <= 1, "loader: p_uncond ", o.p_uncond,
             " outside [0, 1]");
  if (o.cfg) {
    bool text = ds.context_shape()[0] > 0;
    UVIT_CHECK(text || ds.num_classes() > 0, ds.describe(),
               ": cfg (label dropout) needs a labelled or text-conditional dataset");
    UVIT_CHECK(!text || !ds.empty_context().empty(), ds.describe(), ": cfg needs an empty context");
  }
}

}  // namespace

LoaderState make_batch(const Dataset& ds, const LoaderOptions& opt, LoaderState st, Batch& out) {
  check_options(ds, opt);
  const int64_t n = ds.size();
  st = normalise(st, n, opt);
  const auto& perm = cached_permutation(st.seed, st.epoch, n, opt.shuffle);
  auto shape = ds.item_shape();
  auto cshape = ds.context_shape();
  const int64_t B = batch_len(n, opt, st.offset), m = ds.item_numel(), lc = cshape[0] * cshape[1];
  out.B = B, out.C = shape[0], out.H = shape[1], out.W = shape[2];
  out.L = cshape[0], out.D = cshape[1];
  out.x.resize(size_t(B * m));
  out.labels.assign(size_t(B), -1);
  out.context.resize(size_t(B * lc));
  out.sizes.assign(ds.variable_size() ? size_t(B) : 0, {0, 0});
  out.epoch = st.epoch, out.offset = st.offset;

  auto item = [&](int64_t b) {
    int64_t pos = st.offset + b;
    DrawRng rng{st.seed, st.epoch, pos};
    float* x = out.x.data() + b * m;
    float* ctx = lc ? out.context.data() + b * lc : nullptr;
    const bool flip = opt.random_flip && rng.stream(kRngFlip).uniform(uint64_t(pos)) < 0.5f;
    int64_t label = flip ? ds.get_flipped(perm[size_t(pos)], x, ctx, rng)
                         : ds.get(perm[size_t(pos)], x, ctx, rng);
    if (!out.sizes.empty()) out.sizes[size_t(b)] = ds.valid_size(perm[size_t(pos)], rng);
    // CFGDataset: with probability p_uncond the condition becomes the null class / empty context.
    if (opt.cfg && rng.stream(kRngDrop).uniform(uint64_t(pos)) < float(opt.p_uncond)) {
      if (lc) {
        const auto& e = ds.empty_context();
        std::copy(e.begin(), e.end(), ctx);
      } else {
        label = opt.null_label >= 0 ? opt.null_label : ds.num_classes();
      }
    }
    out.labels[size_t(b)] = label;
  };

  int workers = std::max(1, std::min<int>(opt.num_workers, int(B)));
  if (workers == 1) {
    for (int64_t b = 0; b < B; ++b) item(b);
  } else {
    std::vector<std::thread> ts;
    std::vector<std::exception_ptr> errs(static_cast<size_t>(workers));
    for (int w = 0; w < workers; ++w)
      ts.emplace_back([&, w] {
        try {
          for (int64_t b = w; b < B; b += workers) item(b);
        } catch (...) {
          errs[size_t(w)] = std::current_exception();
        }
      });
    for (auto& t : ts) t.join();
    for (auto& e : errs)
      if (e) std::rethrow_exception(e);
  }
  return normalise({st.seed, st.epoch, st.offset + B}, n, opt);
}

// ---- Loader ------------------------------------------------------------------------------------

Loader::Loader(std::shared_ptr<const Dataset> ds, LoaderOptions opt)
    : ds_(std::move(ds)), opt_(opt) {
  UVIT_CHECK(ds_ != nullptr, "loader: no dataset");
  check_options(*ds_, opt_);
  opt_.prefetch = std::max(1, opt_.prefetch);
  consumed_ = produced_ = normalise({opt_.seed, 0, 0}, ds_->size(), opt_);
  produced_index_ = 0;
  start();
}

Loader::~Loader() { stop(); }

void Loader::start() {
  stop_ = false;
  thread_ = std::thread([this] { run(); });
}

void Loader::stop() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Loader::run() {
  while (true) {
    LoaderState st;
    int64_t index;
    {
      std::unique_lock<std::mutex> g(mu_);
      cv_.wait(g, [&] { return stop_ || int(queue_.size()) < opt_.prefetch; });
      if (stop_) return;
      st = produced_;
      index = produced_index_;
    }
    Batch b;
    LoaderState after;
    const int64_t n = ds_->size();
    try {
      // A data-parallel rank skips the batches of its group before its own ...
      for (; index < opt_.take_first; ++index) st = advance(normalise(st, n, opt_), n, opt_);
      after = make_batch(*ds_, opt_, st, b);
      // ... and, after its last one, those up to the end of the group (the next step starts there).
      if (++index == opt_.take_first + opt_.take_count)
        for (; index < opt_.group; ++index) after = advance(after, n, opt_);
      if (index == opt_.group) index = 0;
      b.next_epoch = after.epoch, b.next_offset = after.offset;
    } catch (...) {
      std::lock_guard<std::mutex> g(mu_);
      error_ = std::current_exception();
      cv_.notify_all();
      return;
    }
    {
      std::lock_guard<std::mutex> g(mu_);
      if (stop_) return;
      queue_.push_back(std::move(b));
      produced_ = after;
      produced_index_ = index;
    }
    cv_.notify_all();
  }
}

Batch Loader::next() {
  std::unique_lock<std::mutex> g(mu_);
  cv_.wait(g, [&] { return !queue_.empty() || error_; });
  if (queue_.empty()) std::rethrow_exception(error_);
  Batch b = std::move(queue_.front());
  queue_.pop_front();
  consumed_ = {consumed_.seed, b.next_epoch, b.next_offset};
  g.unlock();
  cv_.notify_all();
  return b;
}

LoaderState Loader::get_state() const {
  std::lock_guard<std::mutex> g(mu_);
  return consumed_;
}

void Loader::set_state(const LoaderState& st) {
  stop();
  queue_.clear();
  error_ = nullptr;
  opt_.seed = st.seed;
  consumed_ = produced_ = normalise(st, ds_->size(), opt_);
  produced_index_ = 0;  // states are set at group boundaries (the steps of a checkpoint)
  start();
}

}  // namespace uvit
