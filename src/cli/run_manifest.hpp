// A manifest of the settings that made a command's resumable outputs (eval's chunks, the feature
// files of extract-features): a resume with other settings would mix two kinds of output.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace uvit::cli {

// Writes `manifest` to `path` (atomically) when there is none; otherwise fails with one line,
// "OWNER: holds WHAT of a different run (KEY OLD -> NEW, ...); REMEDY", unless the stored one is
// equal. `newer_keys`: keys that manifests of older versions lack; a stored one equal but for
// lacking some of them is taken as made with the values given, said in one line (unless `quiet`),
// and completed; one that lacks keys and differs in nothing else is refused as "OWNER: holds WHAT
// made by an older uvit, whose PATH does not record KEYS, ...; REMEDY". Returns whether a
// manifest was there. `located`: pairs (PATH_KEY, HASH_KEY) of an input recorded by path and by
// content (its SHA-256): a stored one that differs only in PATH_KEY, HASH_KEY equal, is the same
// file moved or named another way; it is taken, said in one line (unless `quiet`), and rewritten
// with the new path.
bool check_or_write_manifest(const std::string& path, const nlohmann::json& manifest,
                             const std::string& owner, const std::string& what,
                             const std::string& remedy,
                             const std::vector<std::string>& newer_keys = {}, bool quiet = false,
                             const std::vector<std::pair<std::string, std::string>>& located = {});

// Under mpirun, a rank other than the lead, after the lead's check_or_write_manifest (a barrier
// between): the stored manifest must equal `manifest` but for the PATH_KEY of `located` inputs
// whose HASH_KEY is equal (each rank names its files from its own working folder, so a path may
// differ where the content does not); else fails in one line, "PATH: this rank was given other
// settings than rank 0, which recorded its own there (KEY OLD -> NEW, ...); under mpirun every
// rank must be given the same options", or, where it cannot open PATH (the OWNER folder is not
// the lead's), "PATH: rank 0 wrote it, but this rank cannot open it (...)". Writes nothing: the
// lead's record stands.
void check_written_manifest(const std::string& path, const nlohmann::json& manifest,
                            const std::string& owner, const std::string& what,
                            const std::vector<std::pair<std::string, std::string>>& located = {});

}  // namespace uvit::cli
