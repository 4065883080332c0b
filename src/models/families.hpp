// The registry entries, one function per backbone file (src/models/registry.cpp lists them).
#pragma once
#include <string>

#include "uvit/network.hpp"

namespace uvit {

NetworkFamily uvit_family(const std::string& name);  // "uvit", "uvit_t2i" (uvit.cpp)
NetworkFamily dit_family(const std::string& name);   // "dit", "skip_dit", "lightningdit", "fitv2/1"
NetworkFamily mdt_family(const std::string& name);   // "mdt", "mdtv1" (mdt.cpp)
NetworkFamily svg_family(const std::string& name);   // "svg" (svg.cpp)
NetworkFamily lavin_dit_family();                    // "lavin_dit" (lavin_dit.cpp)
NetworkFamily diffit_family();                       // "diffit" (diffit.cpp)

}  // namespace uvit
