// blip/testing/golden_model.hpp — checks a model case set produced by the reference
// (mmpretrain BlipRetrieval) against this library: cases P, A, B, C, D, E, F, O, T, I of
// ../shared/golden/README.md, at its tolerances.
//
// Contract: run_model_case_set<D>(dir) builds StandardBlip<float, D> at the sizes config.json
// declares, loads weights.safetensors and returns one CaseResult per check (name, max error,
// tolerance, pass). D = Cuda runs every case on the GPU (inputs moved there, results compared on
// the host) at the same tolerances; case P (the data preprocessor) is host code and runs on the CPU. Optional files (trajectory.safetensors, interp.safetensors) add cases T
// and I when present. A set it cannot read gives a failed "read" result with the reason.
#pragma once

#include <cmath>
#include <filesystem>
#include <functional>
#include <string>

#include "blip/io/config_json.hpp"
#include "blip/io/model_state.hpp"
#include "blip/models/presets.hpp"
#include "blip/optim/adamw.hpp"
#include "blip/vision/preprocess.hpp"

namespace blip::testing {

struct CaseResult {
  std::string name;
  double max_error = 0;
  double tolerance = 0;
  bool ok = true;
  std::string detail;
};

namespace golden_detail {

template <Device D>
using Model = StandardBlip<float, D>;

inline double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::abs(a[i] - b[i]);
    if (std::isnan(d)) return INFINITY;
    m = std::max(m, d);
  }
  return m;
}

class Checker {
 public:
  std::vector<CaseResult> results;

  template <Element T, Device D>
  void compare(const std::string& name, const Tensor<T, D>& ours_any, const io::SafeTensorsFile& file,
               const std::string& key, double tol) {
    const Tensor<T, Cpu> ours = to<Cpu>(ours_any.detach());
    CaseResult r{name, 0, tol, true, ""};
    if (!file.contains(key)) {
      r.ok = false;
      r.detail = "missing golden key " + key;
    } else {
      const Tensor<double, Cpu> ref = file.load<double>(key);
      if (ref.shape() != ours.shape()) {
        r.ok = false;
        r.detail = str("shape ", ours.shape(), " vs golden ", ref.shape());
      } else {
        r.max_error = max_abs_diff(cast<double>(contiguous(ours.detach())).to_vector(), ref.to_vector());
        r.ok = r.max_error <= tol;
      }
    }
    results.push_back(r);
  }
  void compare_ints(const std::string& name, const std::vector<int64_t>& ours, const io::SafeTensorsFile& file,
                    const std::string& key) {
    CaseResult r{name, 0, 0, true, ""};
    const std::vector<int64_t> ref = file.load<int64_t>(key).to_vector();
    r.ok = ours == ref;
    if (!r.ok) r.detail = str("ours ", ours, " golden ", ref);
    results.push_back(r);
  }
  // Groups many tensors into one line: the worst ratio error/tolerance decides.
  struct Group {
    CaseResult r;
    double worst_ratio = 0;
  };
  void add_to_group(Group& g, double error, double tol, const std::string& what) {
    const double ratio = error / tol;
    if (ratio > g.worst_ratio || std::isnan(error)) {
      g.worst_ratio = std::isnan(error) ? INFINITY : ratio;
      g.r.max_error = error;
      g.r.tolerance = tol;
      g.r.detail = what;
    }
    if (!(error <= tol)) g.r.ok = false;
  }
};

// Attention key biases have mathematically zero gradient (softmax is shift invariant).
inline bool is_key_bias(const std::string& name) {
  return name.ends_with(".self.key.bias");
}

}  // namespace golden_detail

// A host copy of any device's tensor, as double.
template <Element T, Device D>
Tensor<double, Cpu> host_double(const Tensor<T, D>& x) {
  return cast<double>(contiguous(to<Cpu>(x.detach())));
}

template <Device D = Cpu>
std::vector<CaseResult> run_model_case_set(const std::filesystem::path& dir) {
  using namespace golden_detail;
  using Model = golden_detail::Model<D>;
  Checker ck;
  try {
    const BlipConfig config = io::load_blip_config((dir / "config.json").string());
    const io::SafeTensorsFile weights((dir / "weights.safetensors").string());
    const io::SafeTensorsFile inputs((dir / "inputs.safetensors").string());
    const io::SafeTensorsFile outputs((dir / "outputs.safetensors").string());
    auto fresh_model = [&] {
      auto m = std::make_unique<Model>(config);
      io::load_state_dict(*m, weights);
      return m;
    };
    // Tensors of a golden file, on the device under test.
    auto fin = [&](const io::SafeTensorsFile& f, const std::string& k) { return to<D>(f.load<float>(k)); };
    auto ids = [&](const io::SafeTensorsFile& f, const std::string& k) { return to<D>(f.load<int64_t>(k)); };
    auto in = [&](const std::string& k) { return fin(inputs, k); };
    const double fwd = 2e-5;

    // P: data preprocessor
    ck.compare("P.images", normalize_images(inputs.load<float>("P.raw_images_bgr"), config.mean, config.std), outputs,
               "P.images", fwd);

    auto model = fresh_model();
    // A: extract_feat
    const Tensor<float, D> images = in("A.images");
    const TextBatch<float, D> texts{ids(inputs, "A.text_ids"), ids(inputs, "A.text_attn_mask")};
    const Features<float, D> feats = [&] {
      NoGradGuard g;
      return model->extract_feat(&images, &texts, true);
    }();
    ck.compare("A.image_embeds", feats.image_embeds, outputs, "A.image_embeds", fwd);
    ck.compare("A.image_feat", feats.image_feat, outputs, "A.image_feat", fwd);
    ck.compare("A.text_embeds", feats.text_embeds, outputs, "A.text_embeds", fwd);
    ck.compare("A.text_feat", feats.text_feat, outputs, "A.text_feat", fwd);

    // B: multimodal forward on given encoder states
    {
      NoGradGuard g;
      const Tensor<float, D> enc = in("B.encoder_hidden_states");
      const auto kv = model->text_backbone.cross_keys_values(enc);
      const Tensor<int64_t, D> identity = arange<int64_t, D>(enc.size(0));
      const Tensor<float, D> h = model->text_backbone.multimodal(ids(inputs, "B.input_ids"), ids(inputs, "B.attention_mask"), kv, identity);
      ck.compare("B.last_hidden_state", h, outputs, "B.last_hidden_state", fwd);
      ck.compare("B.itm_logits", model->multimodal_head(select(h, 1, 0)), outputs, "B.itm_logits", fwd);
    }

    // C: score matrices (re-ranked and fast)
    {
      const Tensor<int64_t, D> enc_ids = ids(inputs, "C.text_ids_enc");
      const Tensor<int64_t, D> mask = texts.mask;
      ck.compare("C.score_i2t", model->compute_score_matrix_i2t(feats.image_feat, feats.image_embeds, feats.text_feat, enc_ids, mask),
                 outputs, "C.score_i2t", 5e-5);
      ck.compare("C.score_t2i", model->compute_score_matrix_t2i(feats.image_feat, feats.image_embeds, feats.text_feat, enc_ids, mask),
                 outputs, "C.score_t2i", 5e-5);
      const int64_t k = std::min<int64_t>(config.topk, feats.text_feat.size(0));
      NoGradGuard g;
      const Tensor<float, D> sim_i2t = matmul(feats.image_feat, transpose(feats.text_feat, 0, 1));
      ck.compare_ints("C.topk_idx_i2t", topk(sim_i2t, k).indices.to_vector(), outputs, "C.topk_idx_i2t");
      model->set_fast_match(true);
      ck.compare("C.sim_i2t_fast", model->compute_score_matrix_i2t(feats.image_feat, {}, feats.text_feat, enc_ids, mask),
                 outputs, "C.sim_i2t_fast", fwd);
      ck.compare("C.sim_t2i_fast", model->compute_score_matrix_t2i(feats.image_feat, {}, feats.text_feat, enc_ids, mask),
                 outputs, "C.sim_t2i_fast", fwd);
      const Features<float, D> fast = model->extract_feat(&images, &texts);
      CaseResult r{"C.fast_match_no_embeds", 0, 0, !fast.image_embeds.defined() && !fast.text_embeds.defined(), ""};
      ck.results.push_back(r);
      model->set_fast_match(config.fast_match);
    }

    // D, E, F, O: one training step with the recorded negatives
    auto sampler_for = [](std::vector<int64_t> neg_image, std::vector<int64_t> neg_text) -> NegativeSampler {
      return [neg_image, neg_text](NegativeKind kind, int64_t row, const std::vector<float>&) {
        return kind == NegativeKind::image_for_text ? neg_image[static_cast<size_t>(row)] : neg_text[static_cast<size_t>(row)];
      };
    };
    model = fresh_model();
    const std::vector<int64_t> image_ids = ids(inputs, "D.image_ids").to_vector();
    Losses<float, D> losses = model->loss(in("D.images"), {ids(inputs, "D.text_ids"), ids(inputs, "D.text_attn_mask")}, image_ids,
                                            sampler_for(ids(inputs, "D.neg_image_idx").to_vector(), ids(inputs, "D.neg_text_idx").to_vector()));
    for (const char* key : {"image_feat", "text_feat", "image_feat_m", "text_feat_m", "weights_i2t", "weights_t2i",
                            "vl_embeddings", "itm_logits"}) {
      const std::string k = key;
      const Tensor<float, D>& t = k == "image_feat" ? losses.image_feat : k == "text_feat" ? losses.text_feat
                               : k == "image_feat_m" ? losses.image_feat_m : k == "text_feat_m" ? losses.text_feat_m
                               : k == "weights_i2t" ? losses.weights_i2t : k == "weights_t2i" ? losses.weights_t2i
                               : k == "vl_embeddings" ? losses.vl_embeddings : losses.itm_logits;
      ck.compare("D." + k, t, outputs, "D." + k, fwd);
    }
    ck.compare_ints("D.itm_labels", losses.itm_labels.to_vector(), outputs, "D.itm_labels");
    ck.compare("D.itc_loss", losses.itc_loss, outputs, "D.itc_loss", 2e-5);
    ck.compare("D.itm_loss", losses.itm_loss, outputs, "D.itm_loss", 2e-5);

    // F: momentum parameters and queues after loss()
    {
      Checker::Group g{{"F.momentum_params", 0, 2e-5, true, ""}};
      model->visit_momentum_parameters([&](const std::string& name_m, const std::string&, Parameter<float, D>& p) {
        const auto ref = outputs.load<double>("F." + name_m).to_vector();
        ck.add_to_group(g, max_abs_diff(host_double(p.momentum()).to_vector(), ref), 2e-5, name_m);
      });
      ck.results.push_back(g.r);
      ck.compare("F.head.image_queue", model->head.image_queue, outputs, "F.head.image_queue", 2e-5);
      ck.compare("F.head.text_queue", model->head.text_queue, outputs, "F.head.text_queue", 2e-5);
      ck.compare_ints("F.head.idx_queue", model->head.idx_queue.to_vector(), outputs, "F.head.idx_queue");
      ck.compare_ints("F.head.queue_ptr", model->head.queue_ptr.to_vector(), outputs, "F.head.queue_ptr");
    }

    // E: every gradient
    add(losses.itc_loss, losses.itm_loss).backward();
    {
      Checker::Group g{{"E.gradients", 0, 0, true, ""}};
      int64_t count = 0;
      model->visit_parameters([&](const std::string& name, Parameter<float, D>& p) {
        ++count;
        const std::string key = "E.grad." + name;
        if (!outputs.contains(key)) {
          ck.add_to_group(g, INFINITY, 0, "missing " + key);
          return;
        }
        const Tensor<double> ref = outputs.load<double>(key);
        if (!p.grad().defined()) {
          ck.add_to_group(g, INFINITY, 1, name + " has no gradient");
          return;
        }
        const auto r = ref.to_vector();
        double ref_max = 0;
        for (double v : r) ref_max = std::max(ref_max, std::abs(v));
        double tol = 1e-3 * (1e-3 + ref_max);
        if (is_key_bias(name)) tol = 1e-6;  // rounding noise on a zero gradient
        std::vector<double> ours = host_double(p.grad()).to_vector();
        if (name.ends_with("attn.qkv.bias")) {  // the key third: noise as well
          const size_t third = ours.size() / 3;
          std::vector<double> ours_qv, ref_qv;
          for (size_t i = 0; i < ours.size(); ++i)
            if (i < third || i >= 2 * third) { ours_qv.push_back(ours[i]); ref_qv.push_back(r[i]); }
            else ck.add_to_group(g, std::abs(ours[i] - r[i]), 1e-6, name + " (key part)");
          ck.add_to_group(g, max_abs_diff(ours_qv, ref_qv), tol, name);
          return;
        }
        ck.add_to_group(g, max_abs_diff(ours, r), tol, name);
      });
      g.r.detail = str(count, " parameters; worst: ", g.r.detail);
      ck.results.push_back(g.r);
    }

    // O: one AdamW step
    {
      AdamW<float, D> opt(named_parameters(*model), {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.04});
      opt.step();
      Checker::Group g{{"O.params", 0, 1e-6, true, ""}};
      // From zero state the step is p*(1 - lr*wd) - lr * g / (|g| + eps). Where |g| is near eps
      // (attention key biases: noise), a gradient difference that case E accepts moves the step
      // visibly, so each element's tolerance adds the exact step difference the two gradients give.
      model->visit_parameters([&](const std::string& name, Parameter<float, D>& p) {
        const auto ref = outputs.load<double>("O.param." + name).to_vector();
        const auto ours = host_double(p.value()).to_vector();
        const auto grad = host_double(p.grad()).to_vector();
        const auto grad_ref = outputs.load<double>("E.grad." + name).to_vector();
        const double lr = 1e-3, eps = 1e-8;
        auto step = [&](double gv) { return lr * gv / (std::abs(gv) + eps); };
        for (size_t i = 0; i < ours.size(); ++i)
          ck.add_to_group(g, std::abs(ours[i] - ref[i]), 1e-6 + std::abs(step(grad[i]) - step(grad_ref[i])), name);
      });
      ck.results.push_back(g.r);
      // The hack-copied momentum params alias the online storage: after the step they are the
      // online values (golden O.<name_m>); every other momentum copy is unchanged from F.
      Checker::Group gm{{"O.momentum", 0, 0, true, ""}};
      model->visit_momentum_parameters([&](const std::string& name_m, const std::string& relative, Parameter<float, D>& p) {
        const bool hack = outputs.contains("O." + name_m);
        if (hack != Model::follows_online(relative)) ck.add_to_group(gm, INFINITY, 0, name_m + ": aliasing rule differs");
        if (hack) {
          const bool aliased = p.momentum().shares_storage_with(p.value());
          ck.add_to_group(gm, aliased ? 0.0 : INFINITY, 0, name_m + (aliased ? "" : " does not alias the online value"));
        } else {
          const auto ref = outputs.load<double>("F." + name_m).to_vector();
          ck.add_to_group(gm, max_abs_diff(host_double(p.momentum()).to_vector(), ref), 2e-5, name_m);
        }
      });
      ck.results.push_back(gm.r);
    }

    // T: a three-step trajectory
    if (std::filesystem::exists(dir / "trajectory.safetensors")) {
      const io::SafeTensorsFile traj((dir / "trajectory.safetensors").string());
      auto m = fresh_model();
      AdamW<float, D> opt(named_parameters(*m), {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.04});
      for (int s = 1; traj.contains("T.s" + std::to_string(s) + ".images"); ++s) {
        const std::string p = "T.s" + std::to_string(s) + ".";
        ck.compare_ints(p + "queue_ptr_before", m->head.queue_ptr.to_vector(), traj, p + "queue_ptr_before");
        const std::vector<int64_t> step_ids = traj.load<int64_t>(p + "image_ids").to_vector();
        Losses<float, D> l = m->loss(fin(traj, p + "images"), {ids(traj, p + "text_ids"), ids(traj, p + "text_attn_mask")},
                                     step_ids,
                                       sampler_for(traj.load<int64_t>(p + "neg_image_idx").to_vector(),
                                                   traj.load<int64_t>(p + "neg_text_idx").to_vector()));
        ck.compare(p + "itc_loss", l.itc_loss, traj, p + "itc_loss", 2e-5);
        ck.compare(p + "itm_loss", l.itm_loss, traj, p + "itm_loss", 2e-5);
        ck.compare(p + "weights_i2t", l.weights_i2t, traj, p + "weights_i2t", fwd);
        ck.compare(p + "weights_t2i", l.weights_t2i, traj, p + "weights_t2i", fwd);
        ck.compare_ints(p + "idx_queue_after", m->head.idx_queue.to_vector(), traj, p + "idx_queue_after");
        ck.compare_ints(p + "queue_ptr_after", m->head.queue_ptr.to_vector(), traj, p + "queue_ptr_after");
        const Tensor<float, D> total = add(l.itc_loss, l.itm_loss);
        ck.compare(p + "loss", total, traj, p + "loss", 2e-5);
        opt.zero_grad();
        total.backward();
        opt.step();
      }
      // Attention key biases (and the key third of qkv.bias) drift by ~lr a step whatever the
      // sign of their noise gradient: 2 * 3 steps * lr for them, 2e-5 for the rest.
      const double noise_tol = 2 * 3 * 1e-3;
      auto compare_final = [&](Checker::Group& g, const std::string& name, const std::string& relative,
                               const std::vector<double>& ours, const std::vector<double>& ref) {
        if (is_key_bias(relative)) return ck.add_to_group(g, max_abs_diff(ours, ref), noise_tol, name);
        if (!relative.ends_with("attn.qkv.bias")) return ck.add_to_group(g, max_abs_diff(ours, ref), 2e-5, name);
        const size_t third = ours.size() / 3;
        for (size_t i = 0; i < ours.size(); ++i)
          ck.add_to_group(g, std::abs(ours[i] - ref[i]), i >= third && i < 2 * third ? noise_tol : 2e-5, name);
      };
      Checker::Group gp{{"T.final.params", 0, 2e-5, true, ""}};
      m->visit_parameters([&](const std::string& name, Parameter<float, D>& p) {
        compare_final(gp, name, name, host_double(p.value()).to_vector(),
                      traj.load<double>("T.final.param." + name).to_vector());
      });
      ck.results.push_back(gp.r);
      Checker::Group gm{{"T.final.momentum", 0, 2e-5, true, ""}};
      m->visit_momentum_parameters([&](const std::string& name_m, const std::string& relative, Parameter<float, D>& p) {
        compare_final(gm, name_m, relative, host_double(p.momentum()).to_vector(),
                      traj.load<double>("T.final." + name_m).to_vector());
      });
      ck.results.push_back(gm.r);
      ck.compare("T.final.head.image_queue", m->head.image_queue, traj, "T.final.head.image_queue", 2e-5);
      ck.compare("T.final.head.text_queue", m->head.text_queue, traj, "T.final.head.text_queue", 2e-5);
      ck.compare_ints("T.final.head.idx_queue", m->head.idx_queue.to_vector(), traj, "T.final.head.idx_queue");
      ck.compare_ints("T.final.head.queue_ptr", m->head.queue_ptr.to_vector(), traj, "T.final.head.queue_ptr");
    }

    // I: the ViT at other input sizes
    if (std::filesystem::exists(dir / "interp.safetensors")) {
      const io::SafeTensorsFile interp((dir / "interp.safetensors").string());
      auto m = fresh_model();
      NoGradGuard g;
      for (int c = 0; interp.contains("I.c" + std::to_string(c) + ".images"); ++c) {
        const std::string p = "I.c" + std::to_string(c) + ".";
        const Tensor<float, D> imgs = fin(interp, p + "images");
        const std::vector<int64_t> grid = interp.load<int64_t>(p + "grid_hw").to_vector();
        ck.compare(p + "pos_embed_resized",
                   resize_pos_embed(m->vision_backbone.pos_embed.value(), config.vision.grid(), grid[0], grid[1]), interp,
                   p + "pos_embed_resized", 2e-6);
        const Tensor<float, D> e = m->image_embeds(imgs);
        ck.compare(p + "image_embeds", e, interp, p + "image_embeds", 2e-5);
        ck.compare(p + "image_feat", m->image_feat(e), interp, p + "image_feat", 2e-5);
      }
    }
  } catch (const std::exception& e) {
    ck.results.push_back({"read", 0, 0, false, e.what()});
  }
  return ck.results;
}

// The bounds of reduced-precision inference (docs/performance.md), row by row against the golden
// fp32 outputs: bf16 GEMMs keep image_feat and text_feat at a cosine of at least 0.999 and the
// ITM logits of B within 2e-2; int8 linear layers (per-channel weight and per-token activation
// scales) at least 0.995 and within 8e-2 (measured 0.9983 and 0.026 on shared_a: the bounds leave
// the same 3x room for other weights and shapes); fp16 linear layers (more exact than bf16 ones)
// are held to the bf16 bounds.
struct ReducedPrecisionBounds {
  double min_cosine, itm_logits;
};
inline ReducedPrecisionBounds reduced_precision_bounds(Precision precision) {
  if (precision == Precision::int8) return {0.995, 8e-2};
  return {0.999, 2e-2};
}

template <Device D = Cpu>
std::vector<CaseResult> run_model_case_set_reduced(const std::filesystem::path& dir, Precision precision) {
  const ReducedPrecisionBounds bounds = reduced_precision_bounds(precision);
  using namespace golden_detail;
  using Model = golden_detail::Model<D>;
  std::vector<CaseResult> results;
  const std::string tag = std::string(" [") + precision_name(precision) + "]";
  try {
    const BlipConfig config = io::load_blip_config((dir / "config.json").string());
    const io::SafeTensorsFile weights((dir / "weights.safetensors").string());
    const io::SafeTensorsFile inputs((dir / "inputs.safetensors").string());
    const io::SafeTensorsFile outputs((dir / "outputs.safetensors").string());
    auto model = std::make_unique<Model>(config);
    io::load_state_dict(*model, weights);
    NoGradGuard no_grad;
    const PrecisionScope scope(precision);
    const Tensor<float, D> images = to<D>(inputs.load<float>("A.images"));
    const TextBatch<float, D> texts{to<D>(inputs.load<int64_t>("A.text_ids")), to<D>(inputs.load<int64_t>("A.text_attn_mask"))};
    const Features<float, D> feats = model->extract_feat(&images, &texts, false);
    const auto min_cosine = [&](const std::string& key, const Tensor<float, D>& ours) {
      const Tensor<double> ref = outputs.load<double>("A." + key);
      CaseResult r{"A." + key + " min cosine" + tag, 0, 1.0 - bounds.min_cosine, true, ""};
      if (ref.shape() != ours.shape()) {
        r.ok = false;
        r.detail = str("shape ", ours.shape(), " vs golden ", ref.shape());
      } else {
        const std::vector<double> a = host_double(ours).to_vector(), b = ref.to_vector();
        const int64_t cols = ref.size(-1), rows = ref.numel() / std::max<int64_t>(cols, 1);
        double worst = 1.0;
        for (int64_t i = 0; i < rows; ++i) {
          double ab = 0, aa = 0, bb = 0;
          for (int64_t j = 0; j < cols; ++j) {
            const double x = a[static_cast<size_t>(i * cols + j)], y = b[static_cast<size_t>(i * cols + j)];
            ab += x * y;
            aa += x * x;
            bb += y * y;
          }
          const double c = ab / std::sqrt(aa * bb);
          worst = std::isnan(c) ? -1.0 : std::min(worst, c);
        }
        r.max_error = 1.0 - worst;  // reported as the distance from a perfect cosine
        r.ok = r.max_error <= r.tolerance;
        r.detail = str("min cosine ", worst);
      }
      results.push_back(r);
    };
    min_cosine("image_feat", feats.image_feat);
    min_cosine("text_feat", feats.text_feat);
    const Tensor<float, D> enc = to<D>(inputs.load<float>("B.encoder_hidden_states"));
    const auto kv = model->text_backbone.cross_keys_values(enc);
    const Tensor<float, D> h = model->text_backbone.multimodal(to<D>(inputs.load<int64_t>("B.input_ids")),
                                                               to<D>(inputs.load<int64_t>("B.attention_mask")), kv,
                                                               arange<int64_t, D>(enc.size(0)));
    Checker ck;
    ck.compare("B.itm_logits" + tag, model->multimodal_head(select(h, 1, 0)), outputs, "B.itm_logits", bounds.itm_logits);
    results.insert(results.end(), ck.results.begin(), ck.results.end());
  } catch (const std::exception& e) {
    results.push_back({"model case set" + tag, 0, 0, false, e.what()});
  }
  return results;
}

}  // namespace blip::testing
