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

}  // namespace uvit::cli
