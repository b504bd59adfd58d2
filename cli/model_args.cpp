#include "cli/model_args.h"

#include "models/demo/demo.h"
#include "models/store/resolve.h"
#include "models/store/progress.h"

namespace pensieve::cli {

void ModelArgs::add_to(Args& a) {
  a.option("--model", &model, "-m");
  a.option("--threads", &threads, "-t");
  a.option("--precision", &precision);
  a.option("--kv-type", &kv_type);
  a.flag("--no-quantize", &no_quantize);
  a.flag("--quantize", &force_quantize_);
  a.option("--ctx", &ctx);
  a.option("--kernels", &kernels);
  a.option("--device", &device);
}

Result<std::string> demo_model_dir() { return extract_demo_model(); }

Result<std::string> ModelArgs::resolve() const {
  if (model.empty()) return errorf("--model is required (a directory, a Hugging Face repo id, or \"demo\")");
  ResolveOptions ro;
  if (model == "demo") {
    auto dir = demo_model_dir();
    if (!dir) return std::move(dir).take_error();
    ro.demo_dir = *dir;
  }
  TerminalProgress progress(stderr);
  ro.pull.progress = &progress;
  return resolve_model(model, ro);
}

Result<ModelOptions> ModelArgs::options(bool default_exact) const {
  ModelOptions o;
  o.threads = threads;
  o.kernels = kernels;
  o.ctx_tokens = ctx;
  if (precision.empty()) {
    o.precision = default_exact ? Precision::exact : Precision::fast;
  } else if (precision == "exact" || precision == "fast") {
    o.precision = precision == "exact" ? Precision::exact : Precision::fast;
  } else {
    return errorf("--precision is \"%s\", expected exact or fast", precision.c_str());
  }
  if (kv_type == "f16" || kv_type == "f32") {
    o.kv_type = kv_type == "f32" ? ModelOptions::KvType::f32 : ModelOptions::KvType::f16;
  } else if (!kv_type.empty()) {
    return errorf("--kv-type is \"%s\", expected f16 or f32", kv_type.c_str());
  }
  if (no_quantize && force_quantize_) return errorf("--quantize and --no-quantize contradict each other");
  o.load.quantize = no_quantize ? LoadOptions::Quantize::no
                    : force_quantize_ ? LoadOptions::Quantize::yes
                                      : LoadOptions::Quantize::automatic;
  if (device != "auto" && device != "cpu" && device.rfind("vulkan", 0) != 0)
    return errorf("--device is \"%s\", expected auto, cpu or vulkan[:N]", device.c_str());
  o.device = device;
  return o;
}

Result<std::unique_ptr<Model>> ModelArgs::load(bool default_exact) const {
  auto o = options(default_exact);
  if (!o) return std::move(o).take_error();
  auto dir = resolve();
  if (!dir) return std::move(dir).take_error();
  return Model::load(*dir, *o);
}

}  // namespace pensieve::cli
