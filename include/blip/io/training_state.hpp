// blip/io/training_state.hpp — saving and resuming everything a training run needs, in one
// safetensors file written atomically.
//
// Contract: save_training_state(path, model, optimizer, progress, generators, extra) stores
// - `model.<name>`: export_state_dict(model) (parameters, momentum copies, queues, queue_ptr,
//   position_ids; mmpretrain names), in the model's element type;
// - `optimizer.exp_avg.<param>`, `optimizer.exp_avg_sq.<param>` and `optimizer.step.<param>`
//   (I64 scalar) for every parameter the optimizer holds state for;
// - `__metadata__["blip.training_state"]`: JSON {version: 1, progress {step, epoch,
//   batch_in_epoch}, lr (the optimizer's), alpha (the ITC head's), optimizer {beta1, beta2, eps,
//   weight_decay, state: [params]}, generators {name: [4 hex words]} (the model's own as
//   "model" plus those given), momentum_aliased: [names], extra: the caller's JSON}.
// load_training_state(path, model, optimizer, generators) restores all of it (every model key
// is required, as are the optimizer entries the metadata lists and each generator asked for)
// and returns the progress and the extra JSON; the learning rate and alpha in use at the save
// are set again. A missing piece or a wrong shape is an error naming the file and the key; so
// are metadata JSON nested deeper than io/json_text.hpp allows, an all-zero generator state and
// a negative step, epoch or batch.
// Resuming at step k and running to step n gives bit-identical state to running 0..n at once.
#pragma once

#include <nlohmann/json.hpp>

#include "blip/core/rng.hpp"
#include "blip/io/json_text.hpp"
#include "blip/io/model_state.hpp"
#include "blip/io/safetensors_writer.hpp"
#include "blip/io/state_dict.hpp"
#include "blip/optim/adamw.hpp"

namespace blip::io {

struct TrainingProgress {
  int64_t step = 0;            // optimiser steps done
  int64_t epoch = 0;           // the epoch the next step belongs to
  int64_t batch_in_epoch = 0;  // batches of that epoch already consumed
};

using NamedGenerators = std::vector<std::pair<std::string, Generator*>>;

struct ResumedState {
  TrainingProgress progress;
  nlohmann::json extra;
};

inline constexpr const char* training_state_key = "blip.training_state";

namespace detail {

inline nlohmann::json generator_json(const Generator& g) {
  nlohmann::json words = nlohmann::json::array();
  for (uint64_t w : g.state()) {
    char buf[19];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(w));
    words.push_back(buf);
  }
  return words;
}

inline Generator::State generator_state(const nlohmann::json& words, const std::string& where, const std::string& name) {
  BLIP_CHECK(words.is_array() && words.size() == 4, "load_training_state: '", where, "' generator '", name,
             "' is not 4 hex words");
  Generator::State s{};
  for (size_t i = 0; i < 4; ++i) {
    const nlohmann::json& w = words[i];
    BLIP_CHECK(w.is_string() && w.get<std::string>().size() == 16 &&
                   w.get<std::string>().find_first_not_of("0123456789abcdef") == std::string::npos,
               "load_training_state: '", where, "' generator '", name, "' word ", i, " is not 16 hex digits");
    s[i] = std::stoull(w.get<std::string>(), nullptr, 16);
  }
  // xoshiro256** never reaches the all-zero state and stays there once in it (every draw 0).
  BLIP_CHECK(s != Generator::State{}, "load_training_state: '", where, "' generator '", name,
             "' has the all-zero state, which no generator can be in (the file is damaged)");
  return s;
}

template <class V>
V json_field(const nlohmann::json& j, const std::string& key, const std::string& where) {
  BLIP_CHECK(j.is_object() && j.contains(key), "load_training_state: '", where, "' metadata lacks '", key, "'");
  try {
    return j.at(key).get<V>();
  } catch (const nlohmann::json::exception&) {
    fail("load_training_state: '", where, "' metadata '", key, "' has the wrong type: ", json_excerpt(j.at(key)));
  }
}

}  // namespace detail

template <class Model, Differentiable T, Device D>
void save_training_state(const std::string& path, Model& model, AdamW<T, D>& optimizer, const TrainingProgress& progress,
                         const NamedGenerators& generators = {}, const nlohmann::json& extra = nlohmann::json::object()) {
  StateDict state("<training state>");
  const StateDict model_state = export_state_dict(model);
  for (const std::string& name : model_state.keys()) state.insert_any("model." + name, model_state.at(name));
  nlohmann::json with_state = nlohmann::json::array();
  for (const auto& [name, s] : optimizer.state()) {
    if (!s.exp_avg.defined()) continue;
    state.insert("optimizer.exp_avg." + name, s.exp_avg);
    state.insert("optimizer.exp_avg_sq." + name, s.exp_avg_sq);
    state.insert("optimizer.step." + name, Tensor<int64_t, Cpu>::scalar(s.step));
    with_state.push_back(name);
  }
  nlohmann::json gens = {{"model", detail::generator_json(model.generator())}};
  for (const auto& [name, g] : generators) {
    BLIP_CHECK(g && name != "model" && !gens.contains(name), "save_training_state: generator name '", name,
               "' is null, reserved or repeated");
    gens[name] = detail::generator_json(*g);
  }
  nlohmann::json aliased = nlohmann::json::array();
  model.visit_momentum_parameters([&](const std::string& name_m, const std::string&, auto& p) {
    if (p.momentum_aliased()) aliased.push_back(name_m);
  });
  const AdamWOptions& o = optimizer.options();
  const nlohmann::json meta = {
      {"version", 1},
      {"progress", {{"step", progress.step}, {"epoch", progress.epoch}, {"batch_in_epoch", progress.batch_in_epoch}}},
      {"lr", o.lr},
      {"alpha", model.head.alpha},
      {"optimizer", {{"beta1", o.beta1}, {"beta2", o.beta2}, {"eps", o.eps}, {"weight_decay", o.weight_decay},
                     {"state", with_state}}},
      {"generators", gens},
      {"momentum_aliased", aliased},
      {"extra", extra}};
  save_safetensors(path, state, {{training_state_key, meta.dump()}, {"format", "pt"}});
}

template <class Model, Differentiable T, Device D>
ResumedState load_training_state(const std::string& path, Model& model, AdamW<T, D>& optimizer,
                                 const NamedGenerators& generators = {}) {
  const SafeTensorsFile file(path);
  auto it = file.metadata().find(training_state_key);
  BLIP_CHECK(it != file.metadata().end(), "load_training_state: '", path, "' has no __metadata__ key '",
             training_state_key, "' (not a training state)");
  const nlohmann::json meta =
      parse_json_text(it->second, str("load_training_state: '", path, "' metadata '", training_state_key, "'"));
  BLIP_CHECK(meta.is_object(), "load_training_state: '", path, "' metadata '", training_state_key, "' is not an object");
  const int64_t version = detail::json_field<int64_t>(meta, "version", path);
  BLIP_CHECK(version == 1, "load_training_state: '", path, "' has training-state version ", version,
             "; this blip reads version 1");

  // Check everything before changing anything.
  const nlohmann::json gens = meta.contains("generators") ? meta["generators"] : nlohmann::json();
  auto generator_entry = [&](const std::string& name) {
    BLIP_CHECK(gens.is_object() && gens.contains(name), "load_training_state: '", path, "' lacks generator '", name, "'");
    return detail::generator_state(gens[name], path, name);
  };
  const Generator::State model_gen = generator_entry("model");
  std::vector<Generator::State> gen_states;
  for (const auto& [name, g] : generators) gen_states.push_back(generator_entry(name));
  const nlohmann::json progress_json = detail::json_field<nlohmann::json>(meta, "progress", path);
  ResumedState out;
  out.progress.step = detail::json_field<int64_t>(progress_json, "step", path);
  out.progress.epoch = detail::json_field<int64_t>(progress_json, "epoch", path);
  out.progress.batch_in_epoch = detail::json_field<int64_t>(progress_json, "batch_in_epoch", path);
  // An epoch is at least one batch and a step at least one batch: the position cannot run ahead
  // of the steps taken (the caller, who knows the batches per epoch, checks it exactly).
  BLIP_CHECK(out.progress.step >= 0 && out.progress.epoch >= 0 && out.progress.batch_in_epoch >= 0,
             "load_training_state: '", path, "' has a negative step, epoch or batch (", out.progress.step, ", ",
             out.progress.epoch, ", ", out.progress.batch_in_epoch, ")");
  const double lr = detail::json_field<double>(meta, "lr", path);
  const double alpha = detail::json_field<double>(meta, "alpha", path);
  const nlohmann::json opt = detail::json_field<nlohmann::json>(meta, "optimizer", path);
  const auto with_state = detail::json_field<std::vector<std::string>>(opt, "state", path);
  const auto aliased = detail::json_field<std::vector<std::string>>(meta, "momentum_aliased", path);
  std::map<std::string, Parameter<T, D>*> params;
  for (const auto& [name, p] : optimizer.params()) params[name] = p;
  for (const std::string& name : with_state) {
    BLIP_CHECK(params.count(name), "load_training_state: '", path, "' has optimizer state for '", name,
               "', which the optimizer does not hold");
    for (const std::string part : {"exp_avg", "exp_avg_sq"}) {
      const std::string key = "optimizer." + part + "." + name;
      BLIP_CHECK(file.contains(key), "load_training_state: '", path, "' lacks '", key, "'");
      BLIP_CHECK(file.shape(key) == params[name]->shape(), "load_training_state: '", path, "' key '", key,
                 "' has shape ", file.shape(key), ", the parameter has ", params[name]->shape());
    }
    const std::string key = "optimizer.step." + name;
    BLIP_CHECK(file.contains(key) && file.shape(key).empty(), "load_training_state: '", path, "' lacks the scalar '",
               key, "'");
  }

  load_state_dict(model, PrefixedSource(file, "model."),
                  LoadOptions{.naming = KeyNaming::mmpretrain, .strict = true, .complete = true,
                              .interpolate_pos_embed = false});
  model.visit_momentum_parameters([&](const std::string& name_m, const std::string&, auto& p) {
    if (std::find(aliased.begin(), aliased.end(), name_m) != aliased.end()) p.alias_momentum();
  });
  model.generator().set_state(model_gen);
  model.set_alpha(alpha);
  for (size_t i = 0; i < generators.size(); ++i) generators[i].second->set_state(gen_states[i]);
  optimizer.state().clear();
  for (const std::string& name : with_state) {
    typename AdamW<T, D>::State s;
    // Copies, not views of the mapped file: the run outlives the file it resumed from.
    s.exp_avg = clone(to<D>(file.load<T>("optimizer.exp_avg." + name)));
    s.exp_avg_sq = clone(to<D>(file.load<T>("optimizer.exp_avg_sq." + name)));
    s.step = file.load<int64_t>("optimizer.step." + name).item();
    optimizer.set_state(name, std::move(s));
  }
  optimizer.set_lr(lr);
  out.extra = meta.contains("extra") ? meta["extra"] : nlohmann::json::object();
  return out;
}

}  // namespace blip::io
