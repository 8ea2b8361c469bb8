// Trains a small classifier (Linear -> LayerNorm -> GELU -> Linear) on synthetic clusters with
// AdamW and a cosine schedule, printing the loss as it goes down. The README's first command
// runs it until the BLIP demo exists.
#include <blip/blip.hpp>

#include <cstdio>

using namespace blip;

struct TinyClassifier {
  using value_type = float;
  using device_type = Cpu;
  Linear<float> fc1{16, 64};
  LayerNorm<float> norm{64, 1e-6};
  Linear<float> fc2{64, 4};

  explicit TinyClassifier(Generator& gen) {
    init_trunc_normal(fc1.weight, gen, 0.2);
    init_trunc_normal(fc2.weight, gen, 0.2);
  }
  Tensor<float> operator()(const Tensor<float>& x) const { return fc2(gelu(norm(fc1(x)))); }
  template <class F>
  void visit_parameters(F&& f, const std::string& prefix) {
    fc1.visit_parameters(f, join_name(prefix, "fc1"));
    norm.visit_parameters(f, join_name(prefix, "norm"));
    fc2.visit_parameters(f, join_name(prefix, "fc2"));
  }
};

int main() {
  Generator gen(2024);
  const int64_t n = 512, classes = 4;
  const Tensor<float> centers = randn<float>({classes, 16}, gen, 0.0, 1.0);
  std::vector<int64_t> label_values(static_cast<size_t>(n));
  for (auto& l : label_values) l = gen.uniform_int(classes);
  const Tensor<int64_t> labels = Tensor<int64_t>::from_vector({n}, label_values);
  const Tensor<float> x = add(index_select(centers, 0, labels), randn<float>({n, 16}, gen, 0.0, 0.8));

  TinyClassifier model(gen);
  AdamW<float> opt(named_parameters(model), {.lr = 3e-3, .weight_decay = 0.01});
  const CosineSchedule schedule{.base_lr = 3e-3, .total_steps = 60, .warmup_steps = 5, .warmup_start_factor = 0.1};
  float first = 0, last = 0;
  for (int64_t step = 0; step < 60; ++step) {
    opt.set_lr(schedule.lr_at(step));
    opt.zero_grad();
    Tensor<float> loss = cross_entropy(model(x), labels);
    loss.backward();
    opt.step();
    last = loss.item();
    if (step == 0) first = last;
    if (step % 10 == 0 || step == 59) std::printf("step %2lld  lr %.2e  loss %.4f\n", static_cast<long long>(step), opt.lr(), last);
  }
  std::printf("loss %.4f -> %.4f (%s)\n", first, last, last < first ? "going down" : "NOT going down");
  return last < first ? 0 : 1;
}
