// The registry entries, one function per backbone file (src/models/registry.cpp lists them).
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "uvit/network.hpp"

namespace uvit {

// The entry of a family whose "nnet" section parses into one config (parse(nnet) validates it):
// spec, table and flops are functions of that config, the network is Net(config, backend), and
// the full config is the config's to_json().
template <class Net, class Parse, class Spec, class Table, class Flops>
NetworkFamily config_family(std::string name, Parse parse, Spec spec, Table table, Flops flops) {
  using json = nlohmann::json;
  NetworkFamily f;
  f.name = std::move(name);
  f.spec = [=](const json& doc) { return spec(parse(doc.at("nnet"))); };
  f.table = [=](const json& nnet) { return table(parse(nnet)); };
  f.flops = [=](const json& nnet) { return flops(parse(nnet)); };
  f.create = [=](const json& doc, Backend& be) -> std::unique_ptr<Network> {
    return std::make_unique<Net>(parse(doc.at("nnet")), be);
  };
  f.full_config = [=](const json& nnet) { return parse(nnet).to_json(); };
  return f;
}

NetworkFamily uvit_family(const std::string& name);  // "uvit", "uvit_t2i" (uvit.cpp)
NetworkFamily dit_family(const std::string& name);   // "dit", "skip_dit", "lightningdit", "fitv2/1"
NetworkFamily mdt_family(const std::string& name);   // "mdt", "mdtv1" (mdt.cpp)
NetworkFamily svg_family(const std::string& name);   // "svg" (svg.cpp)
NetworkFamily lavin_dit_family();                    // "lavin_dit" (lavin_dit.cpp)
NetworkFamily diffit_family();                       // "diffit" (diffit.cpp)

}  // namespace uvit
