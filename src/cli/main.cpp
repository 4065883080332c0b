// `uvit`: the command-line program.
#include <omp.h>

#include <cstdio>
#include <new>
#include <set>
#include <sstream>

#include "cli/commands.hpp"
#include "uvit/dist.hpp"
#include "uvit/error.hpp"
#include "uvit/log.hpp"

namespace {

// Wraps option and command descriptions to the terminal's usual 100 columns (CLI11 2.1 does not),
// indenting the continuation lines under the description column.
class WrappingFormatter : public CLI::Formatter {
 public:
  WrappingFormatter() { column_width(32); }
  std::string make_option_desc(const CLI::Option* opt) const override {
    return wrap(CLI::Formatter::make_option_desc(opt));
  }
  std::string make_subcommand(const CLI::App* sub) const override {
    std::stringstream out;
    CLI::detail::format_help(out, sub->get_display_name(true), wrap(sub->get_description()),
                             column_width_);
    return out.str();
  }

 private:
  static constexpr size_t kWidth = 100;
  std::string wrap(const std::string& text) const {
    const size_t width = kWidth - get_column_width();
    std::string out, line;
    std::istringstream words(text);
    for (std::string w; words >> w;) {
      if (!line.empty() && line.size() + 1 + w.size() > width) {
        out += line + "\n";
        line.clear();
      }
      line += (line.empty() ? "" : " ") + w;
    }
    return out + line;
  }
};

std::string command_list(const CLI::App& app) {
  std::string s;
  for (const CLI::App* c : app.get_subcommands([](const CLI::App*) { return true; }))
    s += (s.empty() ? "" : ", ") + c->get_name();
  return s;
}

// --threads on the program and on every (sub)command, so that it works in any position and shows
// in every command's help.
void add_threads(CLI::App* app) {
  app->add_option_function<int>(
         "--threads",
         [](int n) {
           if (n > 0) omp_set_num_threads(n);
         },
         "CPU threads (default: all cores; 0 = all; docs/benchmarks.md: on a busy machine fewer "
         "can be faster)")
      ->check(uvit::cli::at_least(0));
  for (CLI::App* sub : app->get_subcommands({})) add_threads(sub);
}

// `uvit help [COMMAND [SUBCOMMAND]]`: the command's help (the program's without one).
void add_help(CLI::App& app) {
  auto* cmd = app.add_subcommand("help", "Print the help of a command: uvit help COMMAND");
  auto words = std::make_shared<std::vector<std::string>>();
  cmd->add_option("COMMAND", *words, "command (and subcommand) whose help to print");
  cmd->callback([&app, words] {
    CLI::App* target = &app;
    std::string name = "uvit";  // for the usage line: "uvit autoencoder decode"
    for (const std::string& w : *words) {
      CLI::App* sub = nullptr;
      for (CLI::App* c : target->get_subcommands([&w](CLI::App* a) { return a->check_name(w); }))
        sub = c;
      UVIT_CHECK(sub, "help: unknown command '", w, "' (commands: ", command_list(*target), ")");
      target = sub;
      name += " " + sub->get_name();
    }
    // Not App::help(): on the program it would describe the selected command, `help` itself.
    std::printf(
        "%s", target->get_formatter()->make_help(target, name, CLI::AppFormatMode::Normal).c_str());
  });
}

// An empty value never means "not given" (leaving the option out does): every option of `app` and
// its commands that takes text refuses "", with names_a_path's message where it names a file or
// folder. Not the free text of a prompt ("" is the empty prompt), nor numbers (number_check).
void refuse_empty_values(CLI::App* app) {
  static const std::set<std::string> free_text = {"prompt", "negative-prompt"};
  // Names, choices and settings: "--sampler must not be empty, got ''".
  static const std::set<std::string> not_paths = {"api-key",     "autoencoder-config",
                                                  "class",       "classes",
                                                  "clip-config", "config",
                                                  "device",      "dtype",
                                                  "encoder",     "guidance-channels",
                                                  "host",        "metrics",
                                                  "mode",        "precision",
                                                  "quantize",    "sampler",
                                                  "set",         "spatial",
                                                  "split",       "svg-config"};
  const auto any_of = [](const CLI::Option* o, const std::set<std::string>& names) {
    for (const std::string& n : o->get_lnames())  // "config" for --config,-c
      if (names.count(n)) return true;
    return false;
  };
  for (CLI::Option* o : app->get_options()) {
    if (o->get_type_name().rfind("TEXT", 0) != 0 || o->get_items_expected_max() == 0 ||
        any_of(o, free_text) || (o->get_positional() && o->get_items_expected_max() > 1))
      continue;
    if (!any_of(o, not_paths)) {
      o->check(uvit::cli::names_a_path());
      continue;
    }
    o->check(CLI::Validator(
        [](std::string& v) -> std::string {
          return v.empty() ? "must not be empty, got '' (leave the option out for its default)"
                           : "";
        },
        ""));
  }
  for (CLI::App* sub : app->get_subcommands([](CLI::App*) { return true; }))
    refuse_empty_values(sub);
}

// A parse error as one line; the common mistakes get a hint on how to fix them.
std::string describe(const CLI::App& app, const CLI::ParseError& e) {
  std::string msg = e.what();
  // The command that failed to parse: "" (the program), "sample", "autoencoder decode".
  const CLI::App* sub = &app;
  std::string cmd;
  while (!sub->get_subcommands().empty()) {
    sub = sub->get_subcommands().back();
    cmd += (cmd.empty() ? "" : " ") + sub->get_name();
  }
  if (!command_list(*sub).empty()) {  // it takes a command, and none was recognised
    const std::string where = cmd.empty() ? "" : cmd + " ";
    for (const std::string& w : sub->remaining())
      if (!w.empty() && w[0] != '-')
        return "unknown command '" + where + w + "' (commands: " + command_list(*sub) + ")";
    if (cmd.empty()) return "give a command: " + command_list(*sub) + " (uvit help COMMAND)";
    return cmd + " needs a command: " + command_list(*sub) + " (uvit help " + cmd + ")";
  }
  // CLI11's "--steps: At Most 1 required but received 2": an option given twice.
  if (size_t p = msg.find(": At Most 1 required but received "); p != std::string::npos)
    return msg.substr(0, p) + " is given " + msg.substr(p + 34) +
           " times; give it once (uvit help " + cmd + ")";
  // CLI11's "--steps: must be >= 1" reads better as a sentence.
  if (size_t p = msg.find(": must "); p != std::string::npos) msg.erase(p, 1);
  const bool takes_words = !sub->get_options([](const CLI::Option* o) {
                                 return o->get_positional() && o->get_items_expected_max() > 1;
                               })
                                .empty();
  for (const std::string& w : sub->remaining()) {
    if (w.size() < 2 || w[0] != '-') continue;
    if (takes_words)
      return w + ": not an option of " + cmd +
             "; put -- before a prompt that starts with '-': uvit " + cmd + " -- " + w;
    return w + ": not an option of " + cmd + " (uvit help " + cmd + ")";
  }
  return msg + " (uvit help " + cmd + ")";
}

// Out of memory: the size options the command was given ("; with --batch 100000000: give smaller
// values"), so that the one line names what to change; "" when none was given.
std::string memory_hint(const CLI::App& app) {
  const CLI::App* sub = &app;
  while (!sub->get_subcommands().empty()) sub = sub->get_subcommands().back();
  std::string given;
  for (const char* name : {"--batch", "--n", "--grid-n", "--chunk", "--max-images", "--resolution"})
    if (const CLI::Option* o = sub->get_option_no_throw(name); o && o->count() > 0)
      given += (given.empty() ? "" : " ") + std::string(name) + " " + o->as<std::string>();
  return given.empty() ? "" : "; with " + given + ": give smaller values";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"uvit: U-ViT diffusion models in C++", "uvit"};
  app.formatter(std::make_shared<WrappingFormatter>());
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("uvit ") + UVIT_VERSION);
  app.footer(
      "uvit help COMMAND prints a command's options.\nExit status: 0 done; 1 error (one line "
      "\"uvit: error: ...\"); 130 / 143 training stopped by\nSIGINT / SIGTERM (after its "
      "checkpoint; 0 in an mpirun/srun job of several ranks).");
  uvit::cli::add_info(app);
  uvit::cli::add_convert(app);
  uvit::cli::add_predict(app);
  uvit::cli::add_lavin_sample(app);
  uvit::cli::add_bench(app);
  uvit::cli::add_train(app);
  uvit::cli::add_sample(app);
  uvit::cli::add_autoencoder(app);
  uvit::cli::add_extract_features(app);
  uvit::cli::add_convert_fit_latents(app);
  uvit::cli::add_fid(app);
  uvit::cli::add_eval(app);
  uvit::cli::add_clip_score(app);
  uvit::cli::add_tokenize(app);
  uvit::cli::add_encode_text(app);
  uvit::cli::add_demo(app);
  uvit::cli::add_serve(app);
  add_help(app);
  add_threads(&app);
  refuse_empty_values(&app);
  // Library warnings reach the user; info lines are the commands' own business (serve and the C
  // API install their own sinks).
  uvit::set_log_sink([](uvit::LogLevel l, const std::string& m) {
    if (l >= uvit::LogLevel::Warn)
      std::fprintf(stderr, "uvit: %s: %s\n", l == uvit::LogLevel::Warn ? "warning" : "error",
                   m.c_str());
  });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // A bad command line is bad input like any other: one line, exit code 1.
    std::fprintf(stderr, "uvit: error: %s\n", describe(app, e).c_str());
    return 1;
  } catch (const uvit::cli::ExitStatus& e) {
    return e.status;
  } catch (const uvit::cli::SameOnEveryRank& e) {
    if (e.rank == 0) std::fprintf(stderr, "uvit: error: %s\n", e.what());
    return 1;  // every rank, without MPI_Abort: none is left waiting
  } catch (const uvit::Error& e) {
    // In a data-parallel job: which rank failed, and the others stopped (docs/distributed.md).
    const bool oom = std::string(e.what()).rfind("out of memory", 0) == 0;  // the backends' alloc
    std::fprintf(stderr, "uvit: error: %s%s%s\n", uvit::rank_prefix().c_str(), e.what(),
                 oom ? memory_hint(app).c_str() : "");
    uvit::abort_job(1);
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "uvit: error: out of memory%s\n", memory_hint(app).c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "uvit: error: %s%s\n", uvit::rank_prefix().c_str(), e.what());
    uvit::abort_job(1);
    return 1;
  }
  return 0;
}
