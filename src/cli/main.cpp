// `uvit`: the command-line program.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <new>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>

#include "cli/checked_together.hpp"
#include "cli/commands.hpp"
#include "cli/error_line.hpp"
#include "cli/std_streams.hpp"
#include "core/mem_limit.hpp"
#include "core/signals.hpp"
#include "uvit/dist.hpp"
#include "uvit/error.hpp"
#include "uvit/log.hpp"
#include "uvit/quote.hpp"
#include "uvit/threads.hpp"

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
           if (n > 0) uvit::set_thread_count(n, "--threads " + std::to_string(n));
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
    std::string command;        // its top-level word: "autoencoder"
    for (const std::string& w : *words) {
      CLI::App* sub = nullptr;
      for (CLI::App* c : target->get_subcommands([&w](CLI::App* a) { return a->check_name(w); }))
        sub = c;
      // As a command line without a recognised command (the ranks may be asked for any help).
      if (!sub)
        uvit::cli::refused_together(
            "", "cpu",
            uvit::cat("help: unknown command '", w, "' (commands: ", command_list(*target), ")"));
      if (target == &app) command = sub->get_name();
      target = sub;
      name += " " + sub->get_name();
    }
    // Under a launcher, the first exchange of the command whose help it is: a rank alone asking for
    // it leaves no other waiting (docs/distributed.md "Errors before the work"). The ranks make
    // the CPU communicator: help takes no --device.
    if (!uvit::cli::help_together(command, "cpu", "uvit help")) return;
    // Not App::help(): on the program it would describe the selected command, `help` itself.
    std::printf(
        "%s", target->get_formatter()->make_help(target, name, CLI::AppFormatMode::Normal).c_str());
  });
}

// An empty value never means "not given" (leaving the option out does). Not for the free text of
// a prompt ("" is the empty prompt), nor numbers (number_check), nor the prompt words.
bool may_be_empty(const CLI::Option& o) {
  static const std::set<std::string> free_text = {"prompt", "negative-prompt"};
  for (const std::string& n : o.get_lnames())  // "config" for --config,-c
    if (free_text.count(n)) return true;
  return o.get_type_name().rfind("TEXT", 0) != 0 || o.get_items_expected_max() == 0 ||
         (o.get_positional() && o.get_items_expected_max() > 1);
}

// The check refusing option `o`'s empty value: names_a_path's message where it names a file or
// folder, else "--sampler must not be empty, got ''" (names, choices and settings).
CLI::Validator empty_value_check(const CLI::Option& o) {
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
  for (const std::string& n : o.get_lnames())
    if (not_paths.count(n))
      return CLI::Validator(
          [](std::string& v) -> std::string {
            return v.empty() ? "must not be empty, got '' (leave the option out for its default)"
                             : "";
          },
          "");
  return uvit::cli::names_a_path();
}

// Every option of `app` and its commands that takes text refuses "".
void refuse_empty_values(CLI::App* app) {
  for (CLI::Option* o : app->get_options())
    if (!may_be_empty(*o)) o->check(empty_value_check(*o));
  for (CLI::App* sub : app->get_subcommands([](CLI::App*) { return true; }))
    refuse_empty_values(sub);
}

// The name of option `o` that command-line word `w` spells ("--autoencoder-config" in
// "--autoencoder-config=x", "-c" in "-c" or "-cx"), or "" when `w` names another.
std::string spelling(const CLI::Option& o, const std::string& w) {
  for (const std::string& n : o.get_lnames())
    if (w.rfind("--" + n, 0) == 0 && (w.size() == n.size() + 2 || w[n.size() + 2] == '='))
      return "--" + n;
  for (const std::string& n : o.get_snames())
    if (w.size() >= 2 && w[0] == '-' && w.compare(1, n.size(), n) == 0) return "-" + n;
  return "";
}

// How the command line spells option `o`: CLI11's messages name an option by its first name
// (--config for -c/--config/--autoencoder-config), the user knows the one typed. Every spelling
// given, in order ("-c/--autoencoder-config" for an option given twice); "" when none is.
std::string typed_names(const CLI::Option& o, const std::vector<std::string>& args) {
  std::string names;
  for (const std::string& w : args) {
    if (w == "--") break;  // prompt words follow
    const std::string n = spelling(o, w);
    if (!n.empty() && ("/" + names + "/").find("/" + n + "/") == std::string::npos)
      names += (names.empty() ? "" : "/") + n;
  }
  return names;
}

// An empty value of an option whose value is optional (`train --resume ''`, `--resume=`): CLI11
// drops it, so that it would mean the option alone ("latest"). Refused before parsing with the
// message refuse_empty_values gives the other options' empty values; "" when there is none.
std::string empty_optional_value(const CLI::App& app, const std::vector<std::string>& args) {
  const CLI::App* at = &app;
  std::string cmd;
  for (size_t i = 0; i < args.size() && args[i] != "--"; ++i) {
    const std::string& w = args[i];
    const auto subs = at->get_subcommands([&w](const CLI::App* a) { return a->check_name(w); });
    if (!subs.empty()) {
      at = subs.front();
      cmd += (cmd.empty() ? "" : " ") + at->get_name();
      continue;
    }
    for (const CLI::Option* o : at->get_options([](const CLI::Option* o) {
           return !o->get_positional() && o->get_items_expected_min() == 0 &&
                  o->get_items_expected_max() > 0;
         })) {
      const std::string n = spelling(*o, w);
      if (n.empty() || !(w == n + "=" || (w == n && i + 1 < args.size() && args[i + 1].empty())))
        continue;
      if (may_be_empty(*o)) continue;
      std::string empty;
      std::string why = empty_value_check(*o)(empty);
      why = why.substr(0, why.find(" (leave"));  // the not_paths' hint is for the whole option
      return n + " " + why + " (leave the value out for its default: " + n + "; uvit help " + cmd +
             ")";
    }
  }
  return "";
}

// A parse error as one line; the common mistakes get a hint on how to fix them.
std::string describe(const CLI::App& app, const CLI::ParseError& e,
                     const std::vector<std::string>& args) {
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
  // CLI11's "--config: ..." names the option by its first name: name it as typed.
  if (msg.rfind("-", 0) == 0)
    if (const size_t end = msg.find_first_of(": "); end != std::string::npos)
      if (const CLI::Option* o = sub->get_option_no_throw(msg.substr(0, end)))
        if (const std::string typed = typed_names(*o, args); !typed.empty())
          msg.replace(0, end, typed);
  // CLI11's "Could not convert: --n = 1.5": a number the option's integer type cannot hold (the
  // validators let through what is a finite number).
  if (msg.rfind("Could not convert: ", 0) == 0)
    if (const size_t eq = msg.find(" = "); eq != std::string::npos) {
      const std::string name = msg.substr(19, eq - 19), value = msg.substr(eq + 3);
      const CLI::Option* o = sub->get_option_no_throw(name);
      const std::string typed = o ? typed_names(*o, args) : "";
      const bool whole = value.find_first_not_of("+-0123456789") == std::string::npos;
      return (typed.empty() ? name : typed) +
             (whole ? " must be at most 2147483647, got " : " must be a whole number, got ") +
             value + " (uvit help " + cmd + ")";
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

// An error every rank of an mpirun/srun job meets alike (the command line, the config): printed
// by rank 0 alone, also before MPI starts. The other ranks wait a moment first, so that a
// launcher which ends the job at the first rank that fails does not stop rank 0 before it prints.
int same_on_every_rank_error(const std::string& msg) {
  if (uvit::launcher_rank() == 0)
    std::fprintf(stderr, "uvit: error: %s\n", uvit::one_line(msg).c_str());
  else
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  return 1;
}

// The command (a top-level word of `args`: "train") and --device ("cpu" unless given) of a command
// line CLI11 refused; read from the words, as the refusal may come before or amid the parse.
std::pair<std::string, std::string> command_and_device(const CLI::App& app,
                                                       const std::vector<std::string>& args) {
  std::string command, device = "cpu";
  for (size_t i = 0; i < args.size() && args[i] != "--"; ++i) {
    const std::string& w = args[i];
    const auto named = app.get_subcommands([&w](const CLI::App* a) { return a->check_name(w); });
    if (command.empty() && !named.empty())
      command = named.front()->get_name();
    else if (w == "--device" && i + 1 < args.size())
      device = args[i + 1];
    else if (w.rfind("--device=", 0) == 0)
      device = w.substr(9);
  }
  return {command, device};
}

// A command line refused before its command ran: exit status 1. Under a launcher, for a command
// whose ranks decide their checks together or a command word not recognised, this rank joins the
// first exchange, so that a bad option on one rank alone is named in one line from rank 0 and no
// rank waits for it (docs/distributed.md "Errors before the work").
int refused_command_line(const CLI::App& app, const std::vector<std::string>& args,
                         const std::string& msg) {
  const auto [command, device] = command_and_device(app, args);
  try {
    uvit::cli::refused_together(command, device, msg);
  } catch (const uvit::cli::SameOnEveryRank& e) {
    return same_on_every_rank_error(e.what());
  } catch (const std::exception& e) {
    // No exchange. A command that makes no communicator runs on every rank as in one process: a
    // rank says its own error, as that command's later errors (no rank waits for another). Else
    // one process, or ranks that cannot exchange (srun without PMI): from rank 0, as alike.
    if (command.empty() || uvit::cli::decides_together(command))
      return same_on_every_rank_error(e.what());
    std::fprintf(stderr, "uvit: error: %s\n", uvit::one_line(e.what()).c_str());
    return 1;
  }
}

// The command line's command, its exit status.
int run(int argc, char** argv) {
  uvit::route_signals_to_one_thread();  // before any thread starts: core/signals.hpp says why
  // Library warnings reach the user (the thread cap's among them, next); info lines are the
  // commands' own business (serve and the C API install their own sinks).
  uvit::set_log_sink([](uvit::LogLevel l, const std::string& m) {
    if (l >= uvit::LogLevel::Warn)
      std::fprintf(stderr, "uvit: %s: %s\n", l == uvit::LogLevel::Warn ? "warning" : "error",
                   uvit::one_line(m).c_str());
  });
  uvit::cap_environment_threads();
  CLI::App app{"uvit: U-ViT diffusion models in C++", "uvit"};
  app.formatter(std::make_shared<WrappingFormatter>());
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("uvit ") + UVIT_VERSION);
  app.footer(
      "uvit help COMMAND prints a command's options.\nExit status: 0 done; 1 error (one line "
      "\"uvit: error: ...\"); 130 / 143 training stopped by\nSIGINT / SIGTERM, 129 / 141 by "
      "SIGHUP (a closed terminal) / SIGPIPE (a dead | tee)\n(after its checkpoint; 0 in an "
      "mpirun/srun job of several ranks) or eval (its finished\nchunks kept).");
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
  // A typo here would silently take the built-in preset instead of the user's copy.
  if (const char* d = std::getenv("UVIT_CONFIG_DIR"); d && *d) {
    std::error_code ec;
    if (!std::filesystem::is_directory(d, ec))
      uvit::log(uvit::LogLevel::Warn,
                uvit::cat("UVIT_CONFIG_DIR=", d,
                          " is not a folder; the presets are looked up without it"));
  }
  // Read when an error is said: the options as parsed by then.
  uvit::cli::set_memory_hint([&app] { return memory_hint(app); });
  const std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (const std::string bad = empty_optional_value(app, args); !bad.empty())
      return refused_command_line(app, args, bad);
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {  // --help, --version
      // Under a launcher, rank 0 prints it once every rank has asked for it; a rank alone asking
      // joins the others' first exchange instead of leaving them waiting.
      const auto [command, device] = command_and_device(app, args);
      const bool version = dynamic_cast<const CLI::CallForVersion*>(&e) != nullptr;
      try {
        if (!uvit::cli::help_together(command, device, version ? "--version" : "--help")) return 0;
      } catch (const uvit::cli::SameOnEveryRank& r) {
        return same_on_every_rank_error(r.what());
      }
      return app.exit(e);
    }
    // A bad command line is bad input like any other: one line, exit code 1.
    return refused_command_line(app, args, describe(app, e, args));
  } catch (const uvit::cli::ExitStatus& e) {
    return e.status;
  } catch (const uvit::cli::SameOnEveryRank& e) {
    return same_on_every_rank_error(e.what());  // every rank, without MPI_Abort: none waits
  } catch (const std::bad_alloc& e) {
    std::fprintf(stderr, "uvit: error: %s\n", uvit::cli::error_line(e).c_str());
    return 1;
  } catch (const std::exception& e) {
    // In a data-parallel job: which rank failed, and the others stopped (docs/distributed.md).
    std::fprintf(stderr, "uvit: error: %s%s\n", uvit::rank_prefix().c_str(),
                 uvit::cli::error_line(e).c_str());
    uvit::abort_job(1);
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  uvit::cli::open_closed_std_fds();  // before any file is opened: std_streams.hpp says why
  return uvit::cli::stdout_status(run(argc, argv));
}
