// Each subcommand registers itself on the app; main() dispatches and turns errors into one line.
#pragma once
#include <CLI/CLI.hpp>

namespace uvit::cli {

void add_info(CLI::App& app);
void add_convert(CLI::App& app);
void add_predict(CLI::App& app);
void add_bench(CLI::App& app);
void add_train(CLI::App& app);
void add_demo(CLI::App& app);
void add_sample(CLI::App& app);
void add_autoencoder(CLI::App& app);
void add_extract_features(CLI::App& app);
void add_fid(CLI::App& app);  // fid, fid-features, fid-stats
void add_eval(CLI::App& app);
void add_tokenize(CLI::App& app);
void add_encode_text(CLI::App& app);

}  // namespace uvit::cli
