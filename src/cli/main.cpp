// `uvit`: the command-line program.
#include <omp.h>

#include <cstdio>
#include <new>

#include "cli/commands.hpp"
#include "uvit/error.hpp"

int main(int argc, char** argv) {
  CLI::App app{"uvit: U-ViT diffusion models in C++"};
  app.require_subcommand(1);
  app.add_option_function<int>(
         "--threads",
         [](int n) {
           if (n > 0) omp_set_num_threads(n);
         },
         "CPU threads (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  uvit::cli::add_info(app);
  uvit::cli::add_convert(app);
  uvit::cli::add_predict(app);
  uvit::cli::add_bench(app);
  uvit::cli::add_train(app);
  uvit::cli::add_sample(app);
  uvit::cli::add_autoencoder(app);
  uvit::cli::add_extract_features(app);
  uvit::cli::add_fid(app);
  uvit::cli::add_eval(app);
  uvit::cli::add_tokenize(app);
  uvit::cli::add_encode_text(app);
  uvit::cli::add_demo(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    // A bad command line is bad input like any other: one line, exit code 1.
    std::fprintf(stderr, "uvit: error: %s (see --help)\n", e.what());
    return 1;
  } catch (const uvit::Error& e) {
    std::fprintf(stderr, "uvit: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "uvit: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "uvit: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
