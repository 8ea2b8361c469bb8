// A host project: one training step of a linear model through the installed headers.
#include <blip/blip.hpp>

#include <filesystem>
#include <iostream>

int main() {
  blip::Generator gen(1);
  blip::Linear<float> fc(4, 2);
  blip::init_normal(fc.weight, gen, 0.5);
  auto x = blip::randn<float>({8, 4}, gen);
  auto labels = blip::Tensor<int64_t>::from_vector({8}, {0, 1, 0, 1, 0, 1, 0, 1});
  blip::AdamW<float> opt(blip::named_parameters(fc), {.lr = 0.1});
  const float before = blip::cross_entropy(fc(x), labels).item();
  for (int i = 0; i < 20; ++i) {
    opt.zero_grad();
    blip::cross_entropy(fc(x), labels).backward();
    opt.step();
  }
  const float after = blip::cross_entropy(fc(x), labels).item();
  std::cout << "blip " << blip::version << " consumer: loss " << before << " -> " << after << "\n";
  // The installed vocabulary is where the installed package says (checkpoints that record only
  // its fingerprint find it there).
  const std::string vocab = blip::pretrained::default_vocab_path();
  if (!std::filesystem::exists(vocab)) {
    std::cerr << "the installed vocabulary '" << vocab << "' is missing\n";
    return 1;
  }
  return after < before ? 0 : 1;
}
