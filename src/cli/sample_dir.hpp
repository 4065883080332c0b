// `uvit sample --dir D` run again (docs/cli.md, "--dir"): which samples D already holds, judged by
// the `uvit-params` record each PNG carries (docs/serve.md "PNG metadata"), so that a killed run's
// finished files are kept and only the others are drawn.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "uvit/image.hpp"

namespace uvit::cli {

struct DirContents {
  // Per sample of [0, n): 1 when D holds its PNG whole, with this run's record.
  std::vector<uint8_t> done;
  long count = 0;          // how many are done
  long broken = 0;         // files there but not whole PNGs (truncated, bad CRC): drawn again
  std::string broken_why;  // the first of them and what is wrong with it
  // The first sample drawn at another --batch than this run's (0 when none) and its file: the
  // samples drawn now then differ from a straight run's in their last bits.
  long other_batch = 0;
  std::string other_batch_file;
};

// Scans D for samples 0..n-1 (sample_file_name). `record(i)` is the `uvit-params` JSON this run
// writes for sample i. Each PNG is read up to its image data (read_png_text_head): one cut short or
// with a damaged header or text is counted as broken (to be drawn again and replaced); a PNG
// without a record, or whose record differs from record(i) in anything but the generator (uvit's
// version and commit) and the mini-batch size (other_batch), fails in one line naming the file and
// the first setting that differs, before anything is drawn or written. `seed_drawn`: this run's
// seed was drawn (--seed -1), which the message then says when the seed differs.
DirContents scan_sample_dir(const std::string& dir, long n,
                            const std::function<std::string(long)>& record, bool seed_drawn);

// The pixels of a sample's PNG that scan_sample_dir found done, checked to be w x h x c.
Image read_sample_png(const std::string& path, int w, int h, int c);

}  // namespace uvit::cli
