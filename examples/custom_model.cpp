// A custom BLIP composition: other depths and widths, the tanh-approximate GELU in the ViT,
// a post-norm text encoder whose FFN uses ReLU, and an ITM head with a pooler. It trains a
// few steps on random data to show every slot working together.
#include <blip/blip.hpp>
#include <blip/models/presets.hpp>

#include <cstdio>

using namespace blip;

using Vision = VisionTransformer<TransformerLayer<PreNorm, NoCrossAttention, GeluTanh, float, Cpu>>;
using Text = BertEncoder<TransformerLayer<PostNorm, WithCrossAttention, Relu, float, Cpu>>;
using CustomBlip = BlipRetrieval<Vision, Text, Linear<float, Cpu>, Linear<float, Cpu>, ItcHead<float, Cpu>,
                                 ItmHead<WithPooler, float, Cpu>>;

// Uncomment to see the one readable error a wrong composition gives:
// using Broken = BlipRetrieval<Linear<float, Cpu>, Text>;  Broken broken(presets::tiny());

int main() {
  BlipConfig config = presets::tiny();
  config.vision = VisionConfig{.img_size = 48, .patch_size = 12, .in_channels = 3, .embed_dims = 48, .num_layers = 3,
                               .num_heads = 3, .feedforward_channels = 96, .layer_norm_eps = 1e-6};
  config.text.num_hidden_layers = 3;
  config.text.hidden_size = 24;
  config.text.num_attention_heads = 3;
  config.text.intermediate_size = 48;
  config.text.encoder_width = 48;
  config.queue_size = 16;

  CustomBlip model(config);
  Generator gen(7);
  model.init_weights(gen);
  AdamW<float> opt(named_parameters(model), {.lr = 1e-3, .weight_decay = 0.04});

  const int64_t B = 4, L = 12;
  std::vector<int64_t> ids(B * L, 0), mask(B * L, 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < 6 + b; ++j) {
      ids[static_cast<size_t>(b * L + j)] = j == 0 ? 101 % config.text.vocab_size : 1 + (b * 7 + j * 3) % 100;
      mask[static_cast<size_t>(b * L + j)] = 1;
    }
  const TextBatch<float, Cpu> texts{Tensor<int64_t>::from_vector({B, L}, ids), Tensor<int64_t>::from_vector({B, L}, mask)};
  const Tensor<float> images = randn<float>({B, 3, 48, 48}, gen);
  for (int step = 0; step < 5; ++step) {
    opt.zero_grad();
    const auto losses = model.loss(images, texts, {0, 1, 2, 3});
    const Tensor<float> total = add(losses.itc_loss, losses.itm_loss);
    total.backward();
    opt.step();
    std::printf("step %d  itc %.4f  itm %.4f\n", step, losses.itc_loss.item(), losses.itm_loss.item());
  }
  const auto pred = model.predict(images, texts);
  std::printf("image->text argmax: %lld %lld %lld %lld\n", static_cast<long long>(pred.label_i2t[0]),
              static_cast<long long>(pred.label_i2t[1]), static_cast<long long>(pred.label_i2t[2]),
              static_cast<long long>(pred.label_i2t[3]));
  return 0;
}
