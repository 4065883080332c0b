// `uvit convert IN OUT.safetensors`: official .pth (or any weights file) to safetensors; with
// --autoencoder, a diffusers VAE is renamed to the official autoencoder names. `uvit convert IN
// OUT.pth` writes torch.save's format back, raw or under a --wrap entry, for the official code.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <map>

#include "cli/commands.hpp"
#include "cli/output_paths.hpp"
#include "cli/resume.hpp"
#include "io/pth_write.hpp"
#include "uvit/autoencoder.hpp"
#include "uvit/config.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"
#include "uvit/network.hpp"
#include "uvit/quant.hpp"

namespace uvit::cli {

namespace {
DType parse_dtype(const std::string& s) {
  if (s == "f32" || s == "float32") return DType::F32;
  if (s == "f16" || s == "float16") return DType::F16;
  if (s == "bf16" || s == "bfloat16") return DType::BF16;
  fail("--dtype: unknown dtype '", s, "' (expected f32, f16 or bf16)");
}

// --wrap: the entry the official loaders take the state_dict from (docs/formats.md, "Writing
// .pth"); "" for a raw state_dict.
std::string parse_wrap(const std::string& s) {
  if (s == "none") return "";
  if (s == "ema" || s == "model" || s == "state_dict") return s;
  fail("--wrap: unknown layout '", s, "' (expected none, ema, model or state_dict)");
}

// --quantize without --config: the config the weights name (docs/cli.md "convert"), or "" when
// they name none. A training run's checkpoint (RUN/nnet_ema.safetensors, or a snapshot's
// RUN/ckpts/STEP/): the run folder, whose config.json holds the run's --set overrides; else a
// preset that the file's metadata records (train and convert --quantize write "config"). `how`
// says which, for the line that announces it.
std::string config_named_by(const std::string& in, const std::map<std::string, std::string>& meta,
                            std::string* how) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path run =
      run_of_checkpoint(fs::path(in).parent_path().empty() ? "." : fs::path(in).parent_path());
  if (fs::is_regular_file(run / "config.json", ec)) {
    *how = cat("the training run ", run.string(), " (its config.json)");
    return run.string();
  }
  const auto it = meta.find("config");
  const std::vector<std::string> presets = preset_names();
  if (it == meta.end() || std::find(presets.begin(), presets.end(), it->second) == presets.end())
    return "";
  *how = cat("preset ", it->second, " (recorded in ", in, "'s metadata)");
  return it->second;
}

bool is_pth(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  for (char& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
  return ext == ".pth" || ext == ".pt";
}

}  // namespace

void add_convert(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "convert", "Convert a .pth checkpoint to .safetensors, or weights to a torch.save .pth");
  struct Opts {
    std::string in, out, config, dtype, quantize, wrap;
    bool autoencoder = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("IN", o->in, "input weights (.pth, .pt, .bin, .ckpt or .safetensors)")
      ->required();
  cmd->add_option("OUT", o->out,
                  "output .safetensors, or .pth/.pt for torch.load (a new file; never the input)")
      ->required();
  cmd->add_option(
      "--config,-c", o->config,
      "check every name and shape against this config (a network preset, JSON file "
      "or run folder; with --autoencoder sd_kl_f8, vavae_f16d32 or an autoencoder JSON)");
  cmd->add_flag("--autoencoder", o->autoencoder,
                "IN is a KL autoencoder: tensors outside encoder/decoder/quant_conv/"
                "post_quant_conv are dropped, diffusers names become the official ones, checked "
                "against --config (default: Stable Diffusion kl-f8), in state_dict order");
  cmd->add_option("--dtype", o->dtype, "store as f32, f16 or bf16 (default: keep each tensor's)");
  cmd->add_option("--quantize", o->quantize,
                  "int8 (per output channel) or int4[:GROUP] (GROUP 32, 64 or 128; default 32): "
                  "the network's linear weights as integers plus F32 scales, for inference "
                  "(the config: --config, else the run folder or preset the weights record; "
                  "docs/formats.md)");
  cmd->add_option("--wrap", o->wrap,
                  "with a .pth OUT: none (a raw state_dict, as DiT's released weights), ema "
                  "({\"ema\": sd}, DiT's and LightningDiT's find_model), model or state_dict "
                  "(docs/formats.md)");
  cmd->callback([o] {
    check_not_input("OUT", o->out, {{"input IN", o->in}});
    check_output("OUT", o->out, {".safetensors", ".pth", ".pt"});
    const bool pth = is_pth(o->out);
    UVIT_CHECK(o->wrap.empty() || pth, "--wrap ", o->wrap, ": only for a .pth or .pt OUT");
    const std::string entry = parse_wrap(o->wrap.empty() ? "none" : o->wrap);
    UVIT_CHECK(!pth || o->quantize.empty(), "--quantize: ", o->out,
               ": official code cannot load quantised weights; write a .safetensors");
    UVIT_CHECK(o->quantize.empty() || !o->autoencoder,
               "--quantize is for diffusion networks, "
               "not --autoencoder");
    QuantFormat qf;  // the file's header only
    const std::map<std::string, std::string> in_meta = open_weights(o->in)->metadata();
    const bool quantised = quant_format_of(in_meta, o->in, &qf);
    UVIT_CHECK(!quantised || !pth, o->in, ": quantised weights (", qf.name(),
               "); official code cannot load them, so there "
               "is no .pth of them (convert the unquantised weights)");
    // A quantised file's tensors are copied as they are, with the metadata that marks them: its
    // scales must stay F32 and its integers are not a network's parameter table.
    UVIT_CHECK(!quantised || (o->dtype.empty() && o->quantize.empty() && !o->autoencoder &&
                              o->config.empty()),
               o->in, ": quantised weights (", qf.name(),
               "); --dtype, --quantize, --autoencoder and --config apply to unquantised weights");
    NamedArrays sd = load_weights(o->in);
    std::map<std::string, std::string> meta;
    if (quantised) meta = quant_metadata(qf);
    if (quantised && in_meta.count("config")) meta["config"] = in_meta.at("config");
    if (!o->dtype.empty()) {  // before quantising: the scales stay F32
      DType d = parse_dtype(o->dtype);
      for (auto& [name, a] : sd)
        if (a.dtype == DType::F32 || a.dtype == DType::F16 || a.dtype == DType::BF16 ||
            a.dtype == DType::F64)
          a = a.converted(d);
    }
    if (o->autoencoder) {
      const AutoencoderConfig c = autoencoder_config_from(o->config);
      const std::string skipped = keep_autoencoder_tensors(sd, c.decoder_only);  // loss.*, ...
      if (!skipped.empty()) std::fprintf(stderr, "%s: %s\n", o->in.c_str(), skipped.c_str());
      const bool diffusers = autoencoder_from_diffusers(sd, int(c.ch_mult.size()));
      check_autoencoder_weights(sd, c, diffusers ? o->in + " (diffusers layout)" : o->in);
      std::map<std::string, Array> by_name;
      for (auto& [name, a] : sd) by_name.emplace(name, std::move(a));
      sd.clear();
      for (const auto& [name, shape] : autoencoder_param_shapes(c))
        sd.emplace_back(name, std::move(by_name.at(name)));
    } else if (!o->quantize.empty()) {
      std::string config = o->config, how;
      if (config.empty()) {
        config = config_named_by(o->in, in_meta, &how);
        UVIT_CHECK(!config.empty(),
                   "--quantize needs --config (the network whose linear weights are quantised): ",
                   o->in, " names none (no run's config.json beside it, no preset in its ",
                   "metadata); give -c PRESET, JSON or RUN");
        std::fprintf(stderr, "--quantize: config %s; -c overrides\n", how.c_str());
      }
      const QuantFormat f = parse_quant_format(o->quantize);
      // The network binds its layers, which marks the GEMM weights in its table; its parameter
      // buffer is allocated but never touched.
      const Config c = load_config(config);
      auto be = make_backend("cpu", "fp32");
      auto net = make_network(c, *be);
      sd = quantize_state_dict(std::move(sd), net->table(), f, o->in);
      meta = quant_metadata(f);
      meta["config"] = c.config_name;  // uvit info names it
    } else if (!o->config.empty()) {
      network_param_table(load_config(o->config)).check(sd, o->in);
    }
    make_parent_dir(o->out);
    if (pth) {
      save_pth(o->out, sd, entry);
    } else {
      meta["format"] = "pt";
      meta["source"] = o->in;
      save_safetensors(o->out, sd, meta);
    }
    size_t n = 0;
    for (auto& [name, a] : sd) n += a.numel();
    std::printf("wrote %s: %zu tensors, %zu values\n", one_line(o->out).c_str(), sd.size(), n);
  });
}

}  // namespace uvit::cli
