// Seeded inputs of one training pass of a network on a backend (B samples; labels and contexts
// when the network takes them) and the pass itself: forward(train) then backward of a fixed dout.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "uvit/backend.hpp"
#include "uvit/network.hpp"
#include "uvit/rng.hpp"

namespace uvit::testing {

struct NetInputs {
  NetInputs(Backend& be, const NetSpec& n, int batch) : B(batch) {
    std::vector<float> x(B * n.in_numel()), t(B), dout(B * n.out_numel()), ctx;
    std::vector<int32_t> y;
    Philox(9).fill_normal(x.data(), x.size());
    Philox(10).fill_normal(dout.data(), dout.size());
    for (int b = 0; b < B; ++b) t[b] = 0.3f + 0.4f * b;
    if (n.text_conditional()) {
      ctx.resize(B * n.context_numel());
      Philox(11).fill_normal(ctx.data(), ctx.size());
    }
    for (int b = 0; n.class_conditional() && b < B; ++b) y.push_back(b % n.real_classes());
    labels = !y.empty(), context = !ctx.empty();
    dx = DeviceBuffer(be, x.size() * 4), dt = DeviceBuffer(be, B * 4);
    dd = DeviceBuffer(be, dout.size() * 4), out = DeviceBuffer(be, dout.size() * 4);
    dy = DeviceBuffer(be, std::max<size_t>(y.size(), 1) * 4);
    dc = DeviceBuffer(be, std::max<size_t>(ctx.size(), 1) * 4);
    be.upload(dx.f32(), x.data(), x.size() * 4);
    be.upload(dt.f32(), t.data(), B * 4);
    be.upload(dd.f32(), dout.data(), dout.size() * 4);
    if (labels) be.upload(dy.as(), y.data(), y.size() * 4);
    if (context) be.upload(dc.f32(), ctx.data(), ctx.size() * 4);
  }
  // forward(train) and backward: adds this batch's gradient to net.grads().
  void train_pass(Network& net) {
    net.forward(dx.f32(), dt.f32(), labels ? dy.as<int32_t>() : nullptr,
                context ? dc.f32() : nullptr, out.f32(), B, true);
    net.backward(dd.f32());
  }
  int B;
  bool labels = false, context = false;
  DeviceBuffer dx, dt, dd, out, dy, dc;
};

}  // namespace uvit::testing
