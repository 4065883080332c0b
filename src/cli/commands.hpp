// Each subcommand registers itself on the app; main() dispatches and turns errors into one line.
#pragma once
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "uvit/backend.hpp"
#include "uvit/error.hpp"
#include "uvit/quote.hpp"

namespace uvit::cli {

void add_info(CLI::App& app);
void add_convert(CLI::App& app);
void add_predict(CLI::App& app);
void add_lavin_sample(CLI::App& app);  // cmd_lavin.cpp
void add_bench(CLI::App& app);
void add_train(CLI::App& app);
void add_demo(CLI::App& app);
void add_sample(CLI::App& app);
void add_autoencoder(CLI::App& app);
void add_extract_features(CLI::App& app);
void add_convert_fit_latents(CLI::App& app);
void add_fid(CLI::App& app);  // fid, fid-features, fid-stats
void add_eval(CLI::App& app);
void add_clip_score(CLI::App& app);
void add_tokenize(CLI::App& app);
void add_encode_text(CLI::App& app);
void add_serve(CLI::App& app);

// Thrown by a command that must end with a particular exit status (an interrupted training run:
// 128 + the signal); main() returns it.
struct ExitStatus {
  int status;
};

// An error every rank of an mpirun/srun job meets alike: a check of the command line, the config
// and the rank count only, made before any rank-specific work (reading data, a checkpoint). main()
// prints it once, from rank 0 (launcher_rank(): also before MPI starts), and every rank exits 1;
// any other error is printed by each rank that has it, named "rank R: " (a file missing on one
// node), and stops the job (docs/cli.md).
struct SameOnEveryRank : Error {
  explicit SameOnEveryRank(const std::string& what) : Error(what) {}
};

// Runs `checks` (of the command line, the config and the rank count only) so that any error they
// raise is a SameOnEveryRank.
template <class F>
void same_on_every_rank(F&& checks) {
  try {
    checks();
  } catch (const SameOnEveryRank&) {
    throw;
  } catch (const Error& e) {
    throw SameOnEveryRank(e.what());
  }
}

// Number checks with readable messages: "must be >= 1, got 0" (main() prints "--steps must be >= 1,
// got 0"). Every numeric option gets one of them, so "nan" and "inf" are refused everywhere.
inline CLI::Validator number_check(double lo, bool lo_open, const char* desc) {
  return CLI::Validator(
      [lo, lo_open](std::string& s) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(s.c_str(), &end);
        if (end == s.c_str() || *end != '\0') return "must be a number, got '" + clipped(s) + "'";
        if (!std::isfinite(v)) return "must be a finite number, got " + clipped(s);
        // An integer beyond 64 bits would be clamped to the largest one by the conversion
        // (--seed 99999999999999999999999 ran with seed 9223372036854775807) without a word.
        if (s.find_first_not_of("+-0123456789") == std::string::npos && std::fabs(v) >= 0x1p63)
          return "must be at most 9223372036854775807, got " + clipped(s);
        if (lo_open ? v > lo : v >= lo) return "";
        char b[64];
        std::snprintf(b, sizeof b, "must be %s %g, got %s", lo_open ? ">" : ">=", lo,
                      clipped(s).c_str());
        return b;
      },
      desc);
}
// A finite number >= lo (integers: >= 1 for counts, >= 0 for seeds).
inline CLI::Validator at_least(double lo) { return number_check(lo, false, ""); }
// A finite number > 0 (times, rates).
inline CLI::Validator positive() { return number_check(0, true, ""); }

// A file or folder name: "" is refused ("--out must name a file or folder, got ''"), where it would
// otherwise reach the filesystem ("cannot rename .tmp.PID") or silently mean "not given" (--init).
// main() puts it on every option that names a file or folder (refuse_empty_values).
inline CLI::Validator names_a_path() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        return s.empty() ? "must name a file or folder, got ''" : "";
      },
      "");
}

// The --precision help of the commands that run the U-ViT: the names make_backend takes.
inline std::string uvit_precision_help() {
  return precision_choices() +
         " (cuda: fp32 activations, TF32 tensor-core GEMMs); default: fp32 on cpu, bf16 on cuda";
}

// The encoders' precision beside a U-ViT of precision `uvit`: exact fp32 with an fp32 U-ViT, else
// the device's encoder default (tf32 on cuda).
inline std::string encoders_beside(const std::string& device, const std::string& uvit) {
  return encoder_precision(device, uvit == "fp32" ? "fp32" : "");
}

// --device cpu|cuda (help: device_help, what runs there, and the default cpu) and --precision
// (help: precision_help); returns --precision for a command's own check.
inline CLI::Option* add_device_options(CLI::App* c, std::string& device, std::string& precision,
                                       const std::string& device_help = "cpu or cuda",
                                       const std::string& precision_help = uvit_precision_help()) {
  // "simdev", the test device of docs/gpu.md ("The simulated device"), is accepted, not listed.
  const CLI::Validator listed = CLI::IsMember(device_names());
  c->add_option("--device", device, device_help + " (default cpu)")
      ->check(CLI::Validator(
          [listed](std::string& d) { return d == "simdev" ? std::string() : listed(d); },
          listed.get_description()));
  return c->add_option("--precision", precision, precision_help);
}

// --device cpu|cuda and --precision fp32|tf32 of the commands that run the fp32 encoders
// (autoencoder, FID Inception, CLIP); the precision's default is encoder_precision's.
inline void add_encoder_device(CLI::App* c, std::string& device, std::string& precision,
                               const char* what) {
  add_device_options(c, device, precision, std::string("cpu or cuda, for ") + what,
                     "fp32, or on cuda tf32 (TF32 tensor-core GEMMs, as PyTorch's convolutions); "
                     "default: fp32 on cpu, tf32 on cuda")
      ->check(CLI::IsMember({"fp32", "tf32"}));
}

}  // namespace uvit::cli
