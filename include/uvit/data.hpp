// Datasets and the background batch loader.
// Every dataset yields float32 CHW items in [-1, 1] (latent datasets: a posterior sample of the
// stored moments) plus an int64 label (-1 when unlabeled) or, for text-to-image features, a context
// [L, D]. All randomness of an item (flip, label dropout, posterior noise, caption choice, npy_folder
// version) is a pure function of (seed, epoch, position in epoch), so batches never depend on thread
// timing and a resumed run continues the same sequence.
#pragma once
#include <array>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "uvit/rng.hpp"

namespace uvit {

// Randomness handed to Dataset::get for one draw: (seed, epoch, position) fixed, `stream` picks the
// purpose. The dataset may use any element index of its streams.
struct DrawRng {
  uint64_t seed = 0;
  int64_t epoch = 0;
  int64_t position = 0;  // index of the draw within the epoch
  // A Philox stream unique to (purpose, epoch); element indices are offset by position * stride.
  Philox stream(uint32_t purpose) const;
};

// Stream purposes (top bits of the Philox stream id, kept apart from other users of the seed).
enum : uint32_t {
  kRngPermutation = 1,  // epoch shuffle
  kRngFlip = 2,         // horizontal flip, element = position
  kRngDrop = 3,         // label dropout, element = position
  kRngPosterior = 4,    // posterior eps, elements position*numel ..
  kRngCaption = 5,      // caption choice, element = position
  kRngVersion = 6,      // npy_folder's resize or crop version, element = position
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // Shape of one item: {C, H, W}.
  virtual std::array<int64_t, 3> item_shape() const = 0;
  // Number of classes K (0: unlabeled). The null class for label dropout is K.
  virtual int num_classes() const { return 0; }
  // Text-conditional datasets: context shape {L, D} per item, else {0, 0}.
  virtual std::array<int64_t, 2> context_shape() const { return {0, 0}; }
  // Writes item i (C*H*W floats) into x and, for context datasets, L*D floats into ctx. Returns the
  // label or -1. Must be thread-safe (called concurrently for different items).
  virtual int64_t get(int64_t i, float* x, float* ctx, const DrawRng& rng) const = 0;
  // Item i horizontally flipped (the loader's random_flip): get() then every canvas row mirrored.
  // npy_folder overrides it: the item's stored flip, else its valid region mirrored in place.
  virtual int64_t get_flipped(int64_t i, float* x, float* ctx, const DrawRng& rng) const;
  // The null condition for text datasets (empty-string context, L*D floats); empty otherwise.
  virtual const std::vector<float>& empty_context() const;
  virtual std::string describe() const = 0;  // one line: name, path, count, shape
  // Variable-size datasets (FiTv2's packed training, docs/data.md): the draw `rng` of item i fills
  // only the top-left valid_size(i, rng) = {height, width} of its item_shape() canvas; get() zeroes
  // the rest. The draw matters where an item has versions of different sizes (npy_folder).
  virtual bool variable_size() const { return false; }
  virtual std::array<int, 2> valid_size(int64_t, const DrawRng&) const {
    const auto s = item_shape();
    return {int(s[1]), int(s[2])};
  }
  int64_t item_numel() const {
    auto s = item_shape();
    return s[0] * s[1] * s[2];
  }
};

// ---- concrete datasets -------------------------------------------------------------------------

// MNIST / Fashion-MNIST idx files (raw or .gz) in `dir`:
// {train,t10k}-{images-idx3,labels-idx1}-ubyte. Pixels map to (x/255 - 0.5)/0.5 (ToTensor +
// Normalize). split: "train" or "test".
std::shared_ptr<Dataset> make_idx_dataset(const std::string& dir,
                                          const std::string& split = "train");
// CIFAR-10 binary version: data_batch_1..5.bin (train) or test_batch.bin in `dir` or
// `dir`/cifar-10-batches-bin. Same normalisation as idx.
std::shared_ptr<Dataset> make_cifar10_dataset(const std::string& dir,
                                              const std::string& split = "train");
// CelebA: torchvision layout ({dir}[/celeba]/img_align_celeba + list_eval_partition.txt, partition
// 0 = train, 1 = valid, 2 = test) or, without the partition file, every image under dir (sorted
// walk). Crop (top 57, left 25, 128x128), resize to `resolution` with PIL-style antialiased
// bilinear. No labels.
std::shared_ptr<Dataset> make_celeba_dataset(const std::string& dir, int resolution = 64,
                                             const std::string& split = "train");
// ImageNet (pixel space): every jpg/jpeg/png/gif under {dir}/train (or dir itself when it has no
// train/), sorted walk; label = sorted index of the basename prefix before the first '_'.
// ADM center_crop_arr to `resolution`; pixels x/127.5 - 1.
std::shared_ptr<Dataset> make_imagenet_dataset(const std::string& dir, int resolution = 64);
// A plain folder of images (sorted walk), center_crop_arr to `resolution`, unlabeled.
std::shared_ptr<Dataset> make_image_folder_dataset(const std::string& dir, int resolution);
// ImageNet latent features: {dir}/{idx}.npy, each a pickled object array (moments [2C,r/f,r/f]:
// [8,r/8,r/8] for SD kl-f8, [64,r/16,r/16] for the VA-VAE; int64 label), idx = 0..n-1. Items are
// scale_factor * (mean + exp(0.5*clamp(logvar,-30,20)) * eps) with a fresh eps per draw.
// resolution: 256 or 512. `deterministic`: the files hold features [C, r/f, r/f] used as they are
// (no sampling, no scale factor), e.g. SVG's encoder output (docs/svg_encoder.md).
std::shared_ptr<Dataset> make_imagenet_features_dataset(const std::string& dir, int resolution,
                                                        double scale_factor = 0.18215,
                                                        bool deterministic = false);
// MS-COCO latent features: {dir}/{train|val}/{i}.npy moments [8,32,32] and {i}_{k}.npy contexts
// [77,768]; {dir}/empty_context.npy. Each draw picks one caption uniformly.
std::shared_ptr<Dataset> make_mscoco_features_dataset(const std::string& dir,
                                                      const std::string& split = "train",
                                                      double scale_factor = 0.23010);

// A folder of per-image .npy arrays [C, h, w] of varying h x w (any float or integer dtype, read as
// float32 as they are: pre-scaled latents or pixels in [-1, 1]), every *.npy under dir in sorted
// walk, each placed top-left on a [C, canvas_h, canvas_w] canvas. Every file must have C channels,
// h and w multiples of `patch` within the canvas and (h / patch)(w / patch) <= max_tokens (0: no
// limit); the file is named otherwise. Label = sorted index of the basename prefix before the
// first '_' (ImageNet's rule). Shapes are read once when the dataset opens. NAME.flip.npy is the
// stored horizontal flip of NAME.npy (FiT's extraction encodes both, docs/fit.md), not an item:
// with the loader's random_flip a draw takes it with p 0.5 (get_flipped). NAME.crop.npy (and its
// NAME.crop.flip.npy) is the crop version of NAME.npy, not an item: resize_or_crop "random" draws
// one of the two per draw with p 1/2 (stream kRngVersion), "resize" / "crop" pin one (docs/fit.md).
std::shared_ptr<Dataset> make_npy_folder_dataset(const std::string& dir, int channels, int canvas_h,
                                                 int canvas_w, int patch, int max_tokens,
                                                 const std::string& resize_or_crop = "random");

// ---- configuration -----------------------------------------------------------------------------

struct DataOptions {
  std::string name = "fmnist";  // fmnist (aliases fashion_mnist, fashion-mnist), mnist, cifar10,
                                // celeba, imagenet, imagenet256_features, imagenet512_features,
                                // mscoco256_features, image_folder, npy_folder
  std::string path;             // empty: the default for the name (fmnist only)
  std::string split = "train";
  int resolution = 0;        // 0: the dataset's natural size
  bool random_flip = false;  // celeba always flips; feature datasets never do
  bool cfg = false;          // label dropout to the null condition
  double p_uncond = 0.0;
  double scale_factor = 0.0;  // latent datasets; 0: 0.18215 (ImageNet) / 0.23010 (MS-COCO)
  // imagenet*_features: "moments" (posterior moments, sampled) or "deterministic" (as-is)
  std::string feature_kind = "moments";
  // npy_folder (variable sizes): the canvas [channels, canvas_h, canvas_w], the size granularity
  // and the token limit; from dataset.{channels, canvas, patch_size, max_tokens}, else from the
  // preset's nnet (in_channels, input_size, patch_size, context_size).
  int channels = 0, canvas_h = 0, canvas_w = 0, patch = 1, max_tokens = 0;
  // npy_folder: which version of an item with a crop version a draw takes (random, resize, crop).
  std::string resize_or_crop = "random";
};

constexpr const char* kDefaultFmnistPath = "/usr/share/datasets/fashion-mnist";

// Reads a config's "dataset" section; `config` may be the whole preset (then
// "autoencoder.scale_factor" is read too) or the section itself. A non-empty path_override replaces
// "path".
DataOptions data_options_from_json(const nlohmann::json& config,
                                   const std::string& path_override = "");
std::shared_ptr<Dataset> make_dataset(const DataOptions& o);

// ---- loader ------------------------------------------------------------------------------------

struct Batch {
  int64_t B = 0, C = 0, H = 0, W = 0;
  std::vector<float> x;         // [B, C, H, W]
  std::vector<int64_t> labels;  // [B]; -1 for unlabeled data; the null class after dropout
  int64_t L = 0, D = 0;         // context shape for text datasets
  std::vector<float> context;   // [B, L, D] or empty
  // Variable-size datasets: each sample's valid {height, width} (top-left of its item); else empty.
  std::vector<std::array<int, 2>> sizes;
  int64_t epoch = 0, offset = 0;  // where this batch starts
  // Where the loader's state goes after this batch (past the batches a data-parallel rank skips
  // at the end of its group).
  int64_t next_epoch = 0, next_offset = 0;
};

struct LoaderState {
  uint64_t seed = 0;
  int64_t epoch = 0;
  int64_t offset = 0;  // index into the epoch's permutation of the next batch's first item
};

struct LoaderOptions {
  int64_t batch_size = 64;
  uint64_t seed = 0;
  bool shuffle = true;
  bool drop_last = true;  // official: the last partial batch of an epoch is dropped
  bool random_flip = false;
  bool cfg = false;
  double p_uncond = 0.0;
  // The label a dropped class becomes: the network's null row (NetSpec::null_class). -1: the
  // dataset's class count, which is the null row only when the network has exactly its classes.
  int null_label = -1;
  int prefetch = 3;     // batches produced ahead (2-4 is plenty)
  int num_workers = 1;  // threads decoding the items of one batch
  // Data parallelism (docs/distributed.md): every training step takes `group` consecutive batches
  // of the one global stream; this loader builds only batches [take_first, take_first +
  // take_count) of each group and skips the rest, so its state (and a checkpoint) stays global.
  int64_t group = 1, take_first = 0, take_count = 1;
};

// Flip/cfg flags the official pipeline uses for a dataset config.
LoaderOptions loader_options(const DataOptions& o, int64_t batch_size, uint64_t seed);

// Builds the batch that starts at `st` without any thread (the loader's thread calls this too).
// Returns the state after the batch.
LoaderState make_batch(const Dataset& ds, const LoaderOptions& opt, LoaderState st, Batch& out);

// The permutation of epoch `epoch` (identity when !shuffle): Fisher-Yates with Philox bits.
std::vector<int64_t> epoch_permutation(uint64_t seed, int64_t epoch, int64_t n,
                                       bool shuffle = true);

// A background thread that keeps `prefetch` batches ready. Errors in the thread are rethrown by
// next().
class Loader {
 public:
  Loader(std::shared_ptr<const Dataset> ds, LoaderOptions opt);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  Batch next();
  // State of the next batch next() returns (for checkpoints).
  LoaderState get_state() const;
  // Drops prefetched batches and continues from `st` (st.seed replaces the seed).
  void set_state(const LoaderState& st);
  const Dataset& dataset() const { return *ds_; }
  const LoaderOptions& options() const { return opt_; }

 private:
  void start();
  void stop();
  void run();

  std::shared_ptr<const Dataset> ds_;
  LoaderOptions opt_;
  LoaderState consumed_;        // state of the next batch handed out
  LoaderState produced_;        // state of the next batch the thread builds
  int64_t produced_index_ = 0;  // its index within its group
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Batch> queue_;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace uvit
