#include "cli/sample_grid.hpp"

#include <algorithm>
#include <cmath>

#include "cli/progress.hpp"
#include "cli/rank_split.hpp"
#include "uvit/pipeline.hpp"

namespace uvit::cli {

std::vector<int> classes_all(const Config& cfg, int n) {
  const int k = real_classes(cfg);
  std::vector<int> y;
  for (int i = 0; k > 0 && i < n; ++i) y.push_back(i % k);
  return y;
}

std::vector<Image> to_images(const std::vector<float>& x, int n, int c, int s, int w) {
  if (w <= 0) w = s;
  std::vector<Image> out;
  for (int i = 0; i < n; ++i) out.push_back(to_image(x.data() + size_t(i) * c * s * w, c, s, w));
  return out;
}

Image sample_grid(const std::vector<Image>& imgs, const std::vector<int>& labels, int classes) {
  if (labels.empty() || classes <= 0) {
    const int side = std::max(1, int(std::ceil(std::sqrt(double(imgs.size())))));
    return make_grid(imgs, side);
  }
  // Row c is class c, up to the last class drawn (an empty class keeps its row, blank).
  const int last = *std::max_element(labels.begin(), labels.end());
  std::vector<std::vector<const Image*>> rows(static_cast<size_t>(last + 1));
  for (size_t i = 0; i < imgs.size(); ++i) rows[size_t(labels[i])].push_back(&imgs[i]);
  size_t cols = 1;
  for (const auto& r : rows) cols = std::max(cols, r.size());
  const Image blank(imgs[0].w, imgs[0].h, imgs[0].c, 0);
  std::vector<Image> cells;
  for (const auto& r : rows)
    for (size_t j = 0; j < cols; ++j) cells.push_back(j < r.size() ? *r[j] : blank);
  return make_grid(cells, int(cols));
}

int grid_count(const Config& cfg, int n) {
  const int k = real_classes(cfg);
  return k > 0 && n >= k ? n / k * k : n;
}

void write_grid(Network& net, const Config& cfg, const std::string& png, int n, GenerateOptions g,
                const std::string& label, bool quiet, Comm* comm) {
  const NetSpec& nc = net.spec();
  const int k = real_classes(cfg);
  std::vector<int> labels;
  n = grid_count(cfg, n);
  if (k > 0 && n >= k) {
    for (int c = 0; c < k; ++c) labels.insert(labels.end(), size_t(n / k), c);
  } else if (k > 0) {
    for (int i = 0; i < n; ++i) labels.push_back(int(int64_t(i) * k / n));
  }
  // Under mpirun (the demo's grid) each rank draws whole mini-batches of the samples, as `uvit
  // sample` does (rank_split.hpp): sample i keeps the noise of index i and is computed in the
  // mini-batch it has in one process, so the grid is the same for any number of ranks.
  const int mb =
      std::max(1, std::min(n, g.mini_batch > 0 ? g.mini_batch
                                               : cfg.json.value("sample", nlohmann::json::object())
                                                     .value("mini_batch_size", 50)));
  const RankRange part = comm ? rank_range(*comm, n, mb) : RankRange{0, n};
  const bool lead = !comm || comm->rank() == 0;
  g.mini_batch = mb;
  g.first_index += uint64_t(part.begin);
  Progress bar(label, 1, quiet || !lead);
  g.progress = [&](int done, int total) {
    bar.set_total(total);
    bar.update(done);
  };
  std::vector<float> x;
  if (part.end > part.begin)
    x = generate(net, cfg, g, int(part.end - part.begin),
                 labels.empty()
                     ? labels
                     : std::vector<int>(labels.begin() + part.begin, labels.begin() + part.end));
  bar.finish();
  if (comm) {
    comm->idle_barrier();  // a rank done first sleeps: the others' share is on its cores
    x = gather_to_root(*comm, x);
    if (!lead) return;
  }
  g.first_index -= uint64_t(part.begin);
  const auto imgs = to_images(x, n, nc.in_chans, nc.img_size, nc.width());
  const bool rows = k > 0 && int(labels.size()) >= k;  // one row per class
  const Image grid = sample_grid(imgs, rows ? labels : std::vector<int>{}, k);
  const GenerateOptions used = with_preset_defaults(cfg, g);
  ModelIdentity grid_id;  // the weights are in memory: no file to name or hash
  grid_id.model = cfg.config_name;
  const ImageParams p = image_params_for(cfg, used, grid_id, labels.empty() ? -1 : labels[0], "",
                                         used.first_index, imgs[0].w, imgs[0].h);
  write_png(png, grid, grid_metadata(p, n));
}

}  // namespace uvit::cli
