// The metrics `uvit eval` reports, in the ADM evaluator's wording and ways (docs/evaluation.md
// "The ADM evaluator"): the reference (FID statistics, an ADM reference batch, reference features)
// and the report of Inception Score, FID, sFID, Precision and Recall.
#pragma once
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "uvit/fid.hpp"

namespace uvit::cli {

// --inception-input pytorch-fid|tf of the commands that run the FID Inception (`uvit eval`, `uvit
// fid`, `uvit fid-features`, `uvit fid-stats`; docs/evaluation.md "The TF graph's input pipeline").
void add_inception_input_option(CLI::App* c, std::string& input);
// An eval work folder's manifest (if any) records the pipeline of its chunks' features as
// "inception_input" ("tf"; none: pytorch-fid): one of the other pipeline is refused in one line,
// "WORK: holds chunks whose Inception features are PIPELINE's, ...; REMEDY".
void check_work_inception_input(const std::string& manifest_path, const std::string& work,
                                InceptionInput input, const std::string& remedy);

struct EvalReference {
  std::string path;
  std::optional<InceptionInput> input;  // the pipeline its statistics record (none: unknown)
  FidStats fid;
  std::optional<FidStats> sfid;  // mu_s, sigma_s when the file has them
  std::vector<float> pool3;      // reference features [n_pool3, 2048] for precision/recall
  long n_pool3 = 0;
  bool has_images = false;  // the file holds arr_0 (an ADM reference batch)
};

// Reads the statistics (not the images) of `ref` and, when given, the features of
// `ref_features` (.npy [N, 2048]); checks the dimensions, and that statistics recording an input
// pipeline record `input`. Cheap: called before sampling.
EvalReference read_eval_reference(const std::string& ref, const std::string& ref_features,
                                  InceptionInput input = InceptionInput::PytorchFid);

// Python's repr of a float (the shortest string that reads back the same), as the evaluator's
// print shows its numbers.
std::string py_float(double v);

// Prints "Inception Score: ", "FID: ", "sFID: ", "Precision: ", "Recall: " (those that can be
// computed; unless `quiet`, a line on stderr says why one is skipped) and fills `res`. pool3
// [n, 2048], logits [n, 1008], spatial [n, 2023] of the samples. `all` false: FID and sFID only.
void report_metrics(const EvalReference& ref, const std::vector<float>& pool3,
                    const std::vector<float>& logits, const std::vector<float>& spatial, long n,
                    bool all, bool quiet, nlohmann::json& res);

}  // namespace uvit::cli
