// The parameter plumbing every Network shares, and the registry lookups.
#include "uvit/network.hpp"

#include <memory>

#include "uvit/config.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace uvit {

Network::Network(NetSpec spec, ParamTable table, Backend& be)
    : spec_(std::move(spec)), table_(std::move(table)), be_(be) {
  params_ = be_.alloc(table_.total());
  be_.fill(params_, 0.f, table_.total());
  act_params_ = params_;
  if (be_.act_bytes() != sizeof(float)) {
    try {
      act_params_ = static_cast<float*>(be_.alloc_bytes(table_.total() * be_.act_bytes()));
    } catch (...) {
      be_.free_bytes(params_);
      throw;
    }
  }
}

Network::~Network() {
  if (grads_) be_.free_bytes(grads_);
  if (act_params_ != params_) be_.free_bytes(act_params_);
  be_.free_bytes(params_);
}

const float* Network::act_params() {
  if (act_stale_ && act_params_ != params_) be_.to_act(params_, act_params_, table_.total());
  act_stale_ = false;
  return act_params_;
}

float* Network::grads() {
  if (!grads_) {
    grads_ = be_.alloc(table_.total());
    be_.fill(grads_, 0.f, table_.total());
  }
  return grads_;
}

void Network::zero_grad() { be_.fill(grads(), 0.f, table_.total()); }

// The host buffers are left uninitialised (ParamTable::load writes every value): load_file frees
// each tensor once copied, so pages are touched as others are released and the host side peaks
// near one copy of the weights (2.7 GB for DiT-XL/2), not two.
void Network::load(const NamedArrays& sd, const std::string& what) {
  std::unique_ptr<float[]> host(new float[table_.total()]);
  table_.load(sd, host.get(), what);
  upload_params(host.get());
}

void Network::load_file(const std::string& path) {
  NamedArrays sd = load_weights(path);
  std::unique_ptr<float[]> host(new float[table_.total()]);
  table_.load(std::move(sd), host.get(), path);
  upload_params(host.get());
}

void Network::upload_params(const float* host) {
  be_.upload(params_, host, table_.total() * sizeof(float));
  act_stale_ = true;
}

NamedArrays Network::export_weights(DType dtype) const {
  std::vector<float> host(table_.total());
  be_.download(host.data(), params_, host.size() * sizeof(float));
  return table_.export_arrays(host.data(), dtype);
}

void Network::check_inputs(const int32_t* y, const float* context, int B) const {
  UVIT_CHECK(B > 0, "forward: batch size must be positive, got ", B);
  UVIT_CHECK(!spec_.text_conditional() || context, spec_.name, " forward needs a context");
  UVIT_CHECK(spec_.text_conditional() || spec_.class_conditional() == (y != nullptr),
             spec_.class_conditional() ? "a class-conditional network needs class labels y"
                                       : "an unconditional network takes no class labels");
}

void Network::set_skip_cache(int every) {
  UVIT_CHECK(every <= 1, "--skip-cache: network ", spec_.name,
             " has no Skip-Cache (it needs the long skips of skip_dit)");
}

std::unique_ptr<Network> make_network(const Config& cfg, Backend& be) {
  return network_family(cfg.spec.name).create(cfg.json, be);
}

ParamTable network_param_table(const Config& cfg) {
  return network_family(cfg.spec.name).table(cfg.json.at("nnet"));
}

double network_forward_flops(const Config& cfg) {
  return network_family(cfg.spec.name).flops(cfg.json.at("nnet"));
}

}  // namespace uvit
