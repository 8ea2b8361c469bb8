// blip/nn/vision_transformer.hpp — mmpretrain's VisionTransformer as BLIP uses it.
//
// Contract: images [B, C, H, W] (normalised) -> all tokens after the final LayerNorm
// [B, 1 + gh*gw, D], CLS first (out_type 'raw'). Patch embedding is a conv with stride = kernel
// and bias; sizes not divisible by the patch are zero-padded at the bottom/right first (mmcv's
// corner AdaptivePadding). When the grid (gh, gw) differs from the one pos_embed was made for,
// the grid part of pos_embed is resized with PyTorch's bicubic (A = -0.75, align_corners=False,
// border-replicated taps, no antialias) on every forward, as mmpretrain's resize_pos_embed; the
// CLS row is kept. Layers are the Layer template argument (pre-norm by default).
// Parameter names: cls_token, pos_embed, patch_embed.projection.{weight,bias},
// layers.N.*, ln1.{weight,bias} (the final norm).
#pragma once

#include <cmath>

#include "blip/nn/transformer.hpp"
#include "blip/ops/conv.hpp"

namespace blip {

struct VisionConfig {
  int64_t img_size = 384;
  int64_t patch_size = 16;
  int64_t in_channels = 3;
  int64_t embed_dims = 768;
  int64_t num_layers = 12;
  int64_t num_heads = 12;
  int64_t feedforward_channels = 3072;
  double layer_norm_eps = 1e-6;

  int64_t grid() const { return img_size / patch_size; }
  int64_t num_tokens() const { return 1 + grid() * grid(); }
};

// Row weights of a 1-D bicubic resize from `in` to `out` samples, as PyTorch's
// upsample_bicubic2d (align_corners=False): out[o] = sum_i W[o, i] in[i].
inline std::vector<double> bicubic_resize_weights(int64_t in, int64_t out) {
  constexpr double A = -0.75;
  auto near = [](double d) { return ((A + 2) * d - (A + 3)) * d * d + 1; };        // |d| <= 1
  auto far = [](double d) { return ((A * d - 5 * A) * d + 8 * A) * d - 4 * A; };  // 1 < |d| < 2
  std::vector<double> w(static_cast<size_t>(out * in), 0.0);
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  for (int64_t o = 0; o < out; ++o) {
    const double x = scale * (static_cast<double>(o) + 0.5) - 0.5;
    const double fl = std::floor(x);
    const double t = x - fl;
    const int64_t i = static_cast<int64_t>(fl);
    const double taps[4] = {far(t + 1), near(t), near(1 - t), far(2 - t)};
    for (int k = 0; k < 4; ++k) {
      const int64_t src = std::clamp<int64_t>(i - 1 + k, 0, in - 1);
      w[static_cast<size_t>(o * in + src)] += taps[k];
    }
  }
  return w;
}

// pos_embed [1, 1 + g0*g0, D] -> [1, 1 + gh*gw, D] (differentiable: two matmuls).
template <Differentiable T, Device D>
Tensor<T, D> resize_pos_embed(const Tensor<T, D>& pos_embed, int64_t g0, int64_t gh, int64_t gw) {
  BLIP_CHECK(pos_embed.dim() == 3 && pos_embed.size(1) == 1 + g0 * g0, "resize_pos_embed: pos_embed ",
             pos_embed.shape(), " does not hold 1 + ", g0, "x", g0, " positions");
  if (gh == g0 && gw == g0) return pos_embed;
  const int64_t width = pos_embed.size(2);
  const auto to_tensor = [](const std::vector<double>& w, int64_t rows, int64_t cols) {
    std::vector<T> cast(w.begin(), w.end());
    return Tensor<T, D>::from_vector({rows, cols}, cast);
  };
  const Tensor<T, D> rows_w = to_tensor(bicubic_resize_weights(g0, gh), gh, g0);
  const Tensor<T, D> cols_w = to_tensor(bicubic_resize_weights(g0, gw), gw, g0);
  const Tensor<T, D> grid = reshape(narrow(pos_embed, 1, 1, g0 * g0), {g0, g0 * width});  // [row, (col, d)]
  const Tensor<T, D> by_rows = reshape(matmul(rows_w, grid), {gh, g0, width});          // [gh, g0, D]
  const Tensor<T, D> by_cols = matmul(cols_w, by_rows);                                   // [gh, gw, D]
  return concat(std::vector{narrow(pos_embed, 1, 0, 1), reshape(by_cols, {1, gh * gw, width})}, 1);
}

template <class Layer = TransformerLayer<PreNorm, NoCrossAttention, GeluErf, float, Cpu>>
class VisionTransformer {
  VisionConfig config_;

 public:
  using value_type = typename Layer::value_type;
  using device_type = typename Layer::device_type;
  using T = value_type;
  using D = device_type;

  explicit VisionTransformer(const VisionConfig& config)
      : config_(config),
        patch_weight(Tensor<T, D>::zeros({config.embed_dims, config.in_channels, config.patch_size, config.patch_size})),
        patch_bias(Tensor<T, D>::zeros({config.embed_dims})),
        cls_token(Tensor<T, D>::zeros({1, 1, config.embed_dims})),
        pos_embed(Tensor<T, D>::zeros({1, config.num_tokens(), config.embed_dims})),
        ln1(config.embed_dims, config.layer_norm_eps) {
    BLIP_CHECK(config.img_size > 0 && config.patch_size > 0 && config.img_size % config.patch_size == 0,
               "VisionTransformer: img_size ", config.img_size, " must be a positive multiple of patch_size ",
               config.patch_size);
    const LayerSizes sizes{config.embed_dims, config.num_heads, config.feedforward_channels, config.layer_norm_eps};
    for (int64_t i = 0; i < config.num_layers; ++i) layers.emplace_back(sizes);
  }

  const VisionConfig& config() const { return config_; }

  // out == Tokens::cls: only the CLS token, [B, 1, D] (the last layer computes one row).
  Tensor<T, D> operator()(const Tensor<T, D>& images, Branch branch = Branch::online, Tokens out = Tokens::all) const {
    BLIP_CHECK(images.dim() == 4 && images.size(1) == config_.in_channels, "VisionTransformer: images must be [B, ",
               config_.in_channels, ", H, W], got ", images.shape());
    const int64_t p = config_.patch_size, B = images.size(0);
    const Tensor<T, D> padded = pad_to_patches(images);
    const int64_t gh = padded.size(2) / p, gw = padded.size(3) / p;
    const Tensor<T, D> weight = reshape(patch_weight.get(branch), {config_.embed_dims, -1});
    const Tensor<T, D> tokens = reshape(linear(patchify(padded, p, p), weight, patch_bias.get(branch)), {B, gh * gw, -1});
    const Tensor<T, D> cls = expand(cls_token.get(branch), {B, 1, config_.embed_dims});
    Tensor<T, D> x = add(concat(std::vector{cls, tokens}, 1),
                         resize_pos_embed(pos_embed.get(branch), config_.grid(), gh, gw));
    for (size_t i = 0; i < layers.size(); ++i) x = layers[i](x, branch, i + 1 == layers.size() ? out : Tokens::all);
    return ln1(out == Tokens::cls && layers.empty() ? narrow(x, 1, 0, 1) : x, branch);
  }

  template <class F>
  void visit_parameters(F&& f, const std::string& prefix) {
    f(join_name(prefix, "cls_token"), cls_token);
    f(join_name(prefix, "pos_embed"), pos_embed);
    f(join_name(prefix, "patch_embed.projection.weight"), patch_weight);
    f(join_name(prefix, "patch_embed.projection.bias"), patch_bias);
    for (size_t i = 0; i < layers.size(); ++i) layers[i].visit_parameters(f, join_name(prefix, "layers." + std::to_string(i)));
    ln1.visit_parameters(f, join_name(prefix, "ln1"));
  }

  // Training from scratch as mmpretrain: trunc-normal(0.02) linear weights and pos_embed, zero
  // biases and cls_token, LayerNorm 1/0, Kaiming-normal (fan_in, linear) patch projection.
  void init_weights(Generator& gen) {
    const double fan_in = static_cast<double>(config_.in_channels * config_.patch_size * config_.patch_size);
    init_normal(patch_weight, gen, 1.0 / std::sqrt(fan_in));
    init_constant(patch_bias, T(0));
    init_constant(cls_token, T(0));
    init_trunc_normal(pos_embed, gen, 0.02);
    for (auto& layer : layers)
      layer.visit_parameters([&](const std::string& name, Parameter<T, D>& p) {
        if (name.ends_with(".bias")) init_constant(p, T(0));
        else if (name.starts_with("ln")) init_constant(p, T(1));
        else init_trunc_normal(p, gen, 0.02);
      }, "");
    init_constant(ln1.weight, T(1));
    init_constant(ln1.bias, T(0));
  }

  Parameter<T, D> patch_weight, patch_bias, cls_token, pos_embed;
  std::vector<Layer> layers;
  LayerNorm<T, D> ln1;

 private:
  // Zero padding at the bottom and right up to multiples of the patch (mmcv corner padding).
  Tensor<T, D> pad_to_patches(const Tensor<T, D>& images) const {
    const int64_t p = config_.patch_size;
    const int64_t H = images.size(2), W = images.size(3);
    const int64_t pad_h = (p - H % p) % p, pad_w = (p - W % p) % p;
    Tensor<T, D> x = images;
    if (pad_h) x = concat(std::vector{x, Tensor<T, D>::zeros({x.size(0), x.size(1), pad_h, W})}, 2);
    if (pad_w) x = concat(std::vector{x, Tensor<T, D>::zeros({x.size(0), x.size(1), H + pad_h, pad_w})}, 3);
    return x;
  }
};

}  // namespace blip
