// `uvit predict`: one network evaluation on tensors from .npy files.
#include <cstdio>

#include "cli/commands.hpp"
#include "cli/output_paths.hpp"
#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"
#include "uvit/network.hpp"

namespace uvit::cli {

void add_predict(CLI::App& app) {
  auto* cmd = app.add_subcommand("predict", "Run the network once: eps = nnet(x, t, y|context)");
  struct Opts {
    std::string config, weights, x, t, y, context, out, device = "cpu", precision;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--config,-c", o->config, "preset name, JSON file or training run folder")
      ->required();
  cmd->add_option("--weights,-w", o->weights, ".safetensors or .pth")->required();
  cmd->add_option("--x", o->x, "float32 [B,C,H,W] .npy")->required();
  cmd->add_option("--t", o->t, "[B] network time input .npy (as the official code passes it)")
      ->required();
  cmd->add_option(
      "--y", o->y,
      "integer (int64) [B] class labels .npy (class-conditional models; a float array is refused)");
  cmd->add_option("--context", o->context, "float32 [B,N,clip_dim] .npy (text-to-image models)");
  cmd->add_option("--out,-o", o->out, "output .npy")->required();
  add_device_options(cmd, o->device, o->precision);
  cmd->callback([o] {
    check_output("--out", o->out, {".npy"});
    check_not_input("--out", o->out,
                    {{"input --x", o->x},
                     {"input --t", o->t},
                     {"input --y", o->y},
                     {"input --context", o->context}});
    Config c = load_config(o->config);
    const NetSpec& n = c.spec;
    Array x = load_npy(o->x);
    const std::vector<int64_t> img_shape = {n.in_chans, n.img_size, n.width()};
    UVIT_CHECK(x.shape.size() == 4 &&
                   std::vector<int64_t>(x.shape.begin() + 1, x.shape.end()) == img_shape,
               o->x, ": shape ", shape_str(x.shape), " does not match the config's [B, ",
               n.in_chans, ", ", n.img_size, ", ", n.width(), "]");
    const int B = int(x.shape[0]);
    UVIT_CHECK(B > 0, o->x, ": empty batch");
    Array t = load_npy(o->t);
    std::vector<float> tv = t.to_f32();
    if (tv.size() == 1 && B > 1) tv.assign(B, tv[0]);  // a scalar t is broadcast, as official
    UVIT_CHECK(int64_t(tv.size()) == B, o->t, ": has ", tv.size(), " values for a batch of ", B);

    auto be = make_backend(o->device, o->precision);
    auto net = make_network(c, *be);
    net->load_file(o->weights);

    auto upload = [&](const void* src, size_t bytes) {
      DeviceBuffer d(*be, bytes);
      be->upload(d.as(), src, bytes);
      return d;
    };
    std::vector<float> xv = x.to_f32();
    DeviceBuffer dx = upload(xv.data(), xv.size() * 4), dt = upload(tv.data(), tv.size() * 4);
    DeviceBuffer dy, dctx;
    if (n.text_conditional()) {
      UVIT_CHECK(!o->context.empty(), "--context is required for the ", n.name, " network");
      Array ctx = load_npy(o->context);
      const std::vector<int64_t> want = {B, n.context_tokens, n.context_dim};
      UVIT_CHECK(ctx.shape == want, o->context, ": shape ", shape_str(ctx.shape), ", expected ",
                 shape_str(want));
      std::vector<float> cv = ctx.to_f32();
      dctx = upload(cv.data(), cv.size() * 4);
    } else if (n.class_conditional()) {
      UVIT_CHECK(!o->y.empty(), "--y is required: config ", c.config_name,
                 " is class-conditional (", n.num_classes, " classes)");
      Array y = load_npy(o->y);
      // Class ids are integers: a float array is a mistake (a wrong file, or noise saved as
      // labels), not labels to round.
      const DType yt = y.dtype;
      UVIT_CHECK(yt == DType::I64 || yt == DType::I32 || yt == DType::I16 || yt == DType::I8 ||
                     yt == DType::U8,
                 o->y, ": labels must be an integer array (int64), not ", dtype_name(yt));
      std::vector<int64_t> yv = y.to_i64();
      UVIT_CHECK(int64_t(yv.size()) == B, o->y, ": has ", yv.size(), " labels for a batch of ", B);
      std::vector<int32_t> yi(B);
      for (int b = 0; b < B; ++b) {
        UVIT_CHECK(yv[b] >= 0 && yv[b] < n.num_classes, o->y, ": label ", yv[b], " at index ", b,
                   " is outside [0, ", n.num_classes, ")");
        yi[b] = int32_t(yv[b]);
      }
      dy = upload(yi.data(), yi.size() * 4);
    } else {
      UVIT_CHECK(o->y.empty(), "--y given, but config ", c.config_name, " is unconditional");
    }
    UVIT_CHECK(n.text_conditional() || o->context.empty(), "--context given, but config ",
               c.config_name, " is not a text-to-image network");
    DeviceBuffer dout(*be, B * n.out_numel() * 4);
    net->forward(dx.f32(), dt.f32(), dy.as<int32_t>(), dctx.f32(), dout.f32(), B);
    Array out(DType::F32, {B, n.out_chans, n.img_size, n.width()});
    be->download(out.data.data(), dout.f32(), out.nbytes());
    make_parent_dir(o->out);
    save_npy(o->out, out);
  });
}

}  // namespace uvit::cli
