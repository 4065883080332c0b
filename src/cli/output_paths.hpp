// Output paths of the commands: checked before any work (so a long run never fails at its final
// write), their folders created just before the work starts.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>

namespace uvit::cli {

// Fails with one line naming `option` unless `path` can be written: its extension is one of `exts`
// (none given: any), it is not a folder, and its folder exists or can be created. "" passes.
void check_output(const char* option, const std::string& path,
                  std::initializer_list<const char*> exts = {});
// Fails with one line unless the output `path` of `option` is none of the `others` (each what it
// is, "input --in" or "output --out", and the file; "" skipped), by path or by file identity
// (./x and x, links): the rename would replace an input, or one output another.
void check_not_input(const char* option, const std::string& path,
                     std::initializer_list<std::pair<const char*, std::string>> others);
// Like check_output for a folder that the command creates (--dir).
void check_output_dir(const char* option, const std::string& dir);
// Creates the folder that `path` goes into (nothing for "" or a bare file name).
void make_parent_dir(const std::string& path);
// Creates the folder `dir` (and its parents): one line naming it when that fails.
void make_dir(const std::string& dir);
// The file of sample `index` in a --dir folder: "%06d.png", as DiT's sample_ddp.py and the ADM
// suite name theirs.
std::string sample_file_name(uint64_t index);
// Whether `path` is a printf pattern for per-image files (sd.cpp's `-o out/img_%03d.png`,
// docs/cli.md): it holds a '%' other than "%%". A pattern must hold exactly one integer conversion,
// %d, %i or %u with an optional 0 flag and width (%d, %05d, %3i); anything else fails naming
// `option`.
bool is_index_pattern(const char* option, const std::string& path);
// The pattern with the conversion replaced by `index` and "%%" by "%".
std::string format_index_pattern(const std::string& pattern, uint64_t index);

}  // namespace uvit::cli
