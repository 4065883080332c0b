// What every layered backbone that plans its activations per batch repeats (MDT, DiffiT, SVG,
// LaVin-DiT): one layers::Arena carved per (batch, train), and the heads of forward and backward
// (inputs checked, plan made, act parameters refreshed, the layers' Weights view).
#pragma once
#include <cstdint>
#include <memory>

#include "models/adaln.hpp"
#include "models/layers.hpp"
#include "uvit/error.hpp"
#include "uvit/network.hpp"

namespace uvit {

class PlannedNetwork : public Network {
 public:
  size_t arena_bytes() const override { return arena_ ? arena_->size() : 0; }

 protected:
  using Network::Network;

  // Carves arena_ for B samples (with `train`, what backward needs); begin_forward calls it.
  virtual void plan(int B, bool train) = 0;
  void plan_batch(int B, bool train) override { plan(B, train); }
  // The head of plan(): false when arena_ is already carved for (B, train); otherwise a fresh,
  // empty arena_ with (B, train) recorded in B_, train_.
  bool replan(int B, bool train) { return layers::begin_plan(be_, arena_, B_, train_, B, train); }
  layers::Weights weights() { return {be_, params_, act_params_, grads_, quant_.get(), &table_}; }
  // The head of forward(): checks the inputs, plans, refreshes the act copy of the parameters.
  layers::Weights begin_forward(const int32_t* y, const float* context, int B, bool train) {
    check_inputs(y, context, B);
    plan(B, train);
    act_params();
    return weights();
  }
  // The head of backward(): refuses without a preceding training forward, allocates the
  // gradients on first use.
  layers::Weights begin_backward() {
    UVIT_CHECK(arena_ && train_, "backward() needs a preceding forward(..., train=true)");
    grads();
    return weights();
  }

  // The plan of the last forward.
  int B_ = 0;
  bool train_ = false;
  std::unique_ptr<layers::Arena> arena_;
};

}  // namespace uvit
