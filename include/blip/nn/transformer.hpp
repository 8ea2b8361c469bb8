// blip/nn/transformer.hpp — the transformer layer template and its two BLIP instances.
//
// TransformerLayer<NormPlacement, CrossAttention, Activation, T, D>:
// - PreNorm  (ViT, mmpretrain names): x += proj(attn(ln1(x))); x += ffn(ln2(x)); fused qkv
//   projection `attn.qkv` [3D, D] (rows q, k, v, head-major inside), `attn.proj`,
//   `ffn.layers.0.0` and `ffn.layers.1`.
// - PostNorm (BERT, HuggingFace names): h = LN(dense(self_attn(x)) + x); with
//   WithCrossAttention, h = LN(dense(cross_attn(h, image)) + h); h = LN(out(act(inter(h))) + h).
//   The self-attention mask is additive ([B, 1, 1, L]); cross-attention keys/values come from
//   another width (encoder_width) and are computed once per image (CrossKV) and shared by every
//   text that attends to that image through kv_index (no copies of image embeddings).
// The norm placement also fixes the parameter naming, because in BLIP it names the family.
// Sizes are runtime values (LayerSizes); a bad size throws blip::Error naming it.
// Tokens::cls asks a layer for its first (CLS) output row only: keys and values still come
// from every token, but the query, residual, norms and feed-forward run on one row. The CLS
// row is bit-for-bit the row of the full pass up to GEMM blocking; callers that read only
// row 0 (features, ITM) use it on the last layer and skip the rest of that layer's work.
#pragma once

#include <optional>

#include "blip/nn/activation.hpp"
#include "blip/nn/layers.hpp"
#include "blip/ops/attention.hpp"
#include "blip/ops/feed_forward.hpp"

namespace blip {

struct PreNorm {};
struct PostNorm {};
struct NoCrossAttention {};
struct WithCrossAttention {};

template <class N>
concept NormPlacement = std::same_as<N, PreNorm> || std::same_as<N, PostNorm>;
template <class C>
concept CrossAttentionChoice = std::same_as<C, NoCrossAttention> || std::same_as<C, WithCrossAttention>;

enum class Tokens { all, cls };

struct LayerSizes {
  int64_t width = 0;        // hidden size
  int64_t heads = 1;
  int64_t ffn = 0;          // feed-forward inner size
  double eps = 1e-6;        // LayerNorm eps
  int64_t cross_width = 0;  // width of what cross-attention attends to (0: same as width)

  void check(const char* where) const {
    BLIP_CHECK(width > 0 && heads > 0 && ffn > 0 && width % heads == 0, where, ": invalid sizes (width ", width,
               ", heads ", heads, ", ffn ", ffn, "): width must be a positive multiple of heads");
  }
};

// Keys and values of one cross-attention layer for a batch of images: [Bi, heads, S, head_dim].
template <Differentiable T, Device D>
struct CrossKV {
  Tensor<T, D> key, value;
};

namespace detail {

// linear -> activation -> linear; the fused op when the activation is GELU(erf).
template <class Act, Differentiable T, Device D>
Tensor<T, D> ffn(const Tensor<T, D>& x, const Linear<T, D>& up, const Linear<T, D>& down, Branch branch) {
  if constexpr (std::same_as<Act, GeluErf>) {
    return feed_forward_gelu(x, up.weight.get(branch), up.bias.get(branch), down.weight.get(branch), down.bias.get(branch));
  } else {
    return down(Act::apply(up(x, branch)), branch);
  }
}

// [B, S, H*hd] -> [B, H, S, hd] (a view)
template <Element T, Device D>
Tensor<T, D> split_heads(const Tensor<T, D>& x, int64_t heads) {
  const int64_t B = x.size(0), S = x.size(1), W = x.size(2);
  return permute(reshape(x, {B, S, heads, W / heads}), {0, 2, 1, 3});
}
// [B, H, S, hd] -> [B, S, H*hd]
template <Element T, Device D>
Tensor<T, D> merge_heads(const Tensor<T, D>& x) {
  const int64_t B = x.size(0), H = x.size(1), S = x.size(2), hd = x.size(3);
  return reshape(permute(x, {0, 2, 1, 3}), {B, S, H * hd});
}

}  // namespace detail

template <NormPlacement Norm, CrossAttentionChoice Cross, Activation Act = GeluErf, Differentiable T = float,
          Device D = Cpu>
class TransformerLayer;

// ---- ViT layer (pre-norm) ------------------------------------------------------------------
template <CrossAttentionChoice Cross, Activation Act, Differentiable T, Device D>
class TransformerLayer<PreNorm, Cross, Act, T, D> {
  static_assert(std::same_as<Cross, NoCrossAttention>,
                "TransformerLayer<PreNorm, ...>: cross-attention is only defined for the post-norm (BERT) layer");

 public:
  using value_type = T;
  using device_type = D;

  explicit TransformerLayer(const LayerSizes& sizes)
      : ln1(sizes.width, sizes.eps),
        qkv(sizes.width, 3 * sizes.width),
        proj(sizes.width, sizes.width),
        ln2(sizes.width, sizes.eps),
        fc1(sizes.width, sizes.ffn),
        fc2(sizes.ffn, sizes.width),
        heads(sizes.heads) {
    sizes.check("TransformerLayer<PreNorm>");
  }

  Tensor<T, D> operator()(const Tensor<T, D>& x, Branch branch = Branch::online, Tokens out = Tokens::all) const {
    const int64_t B = x.size(0), S = x.size(1), W = x.size(2);
    const Tensor<T, D> packed = qkv(ln1(x, branch), branch);  // [B, S, 3W]
    const Tensor<T, D> parts = permute(reshape(packed, {B, S, 3, heads, W / heads}), {2, 0, 3, 1, 4});
    const bool cls = out == Tokens::cls;
    const Tensor<T, D> q = cls ? narrow(select(parts, 0, 0), 2, 0, 1) : select(parts, 0, 0);
    const Tensor<T, D> context = scaled_dot_product_attention(q, select(parts, 0, 1), select(parts, 0, 2));
    const Tensor<T, D> h = add(cls ? narrow(x, 1, 0, 1) : x, proj(detail::merge_heads(context), branch));
    return add(h, detail::ffn<Act>(ln2(h, branch), fc1, fc2, branch));
  }

  template <class F>
  void visit_parameters(F&& f, const std::string& prefix) {
    ln1.visit_parameters(f, join_name(prefix, "ln1"));
    qkv.visit_parameters(f, join_name(prefix, "attn.qkv"));
    proj.visit_parameters(f, join_name(prefix, "attn.proj"));
    ln2.visit_parameters(f, join_name(prefix, "ln2"));
    fc1.visit_parameters(f, join_name(prefix, "ffn.layers.0.0"));
    fc2.visit_parameters(f, join_name(prefix, "ffn.layers.1"));
  }

  LayerNorm<T, D> ln1;
  Linear<T, D> qkv, proj;
  LayerNorm<T, D> ln2;
  Linear<T, D> fc1, fc2;
  int64_t heads;
};

// ---- BERT layer (post-norm, optional cross-attention) ---------------------------------------
template <Differentiable T, Device D>
struct BertAttentionBlock {
  using value_type = T;
  using device_type = D;
  Linear<T, D> query, key, value, dense;
  LayerNorm<T, D> norm;
  int64_t heads = 1;

  BertAttentionBlock(int64_t width, int64_t kv_width, int64_t heads_, double eps)
      : query(width, width), key(kv_width, width), value(kv_width, width), dense(width, width), norm(width, eps),
        heads(heads_) {}

  // Inference reads the head views in place; training copies them once, because the
  // backward's batched GEMMs need one uniform batch stride over [B, heads].
  CrossKV<T, D> keys_values(const Tensor<T, D>& source, Branch branch) const {
    const Tensor<T, D> k = detail::split_heads(key(source, branch), heads);
    const Tensor<T, D> v = detail::split_heads(value(source, branch), heads);
    if (!grad_needed(k, v)) return {k, v};
    return {contiguous(k), contiguous(v)};
  }
  // LN(dense(attention(x -> kv)) + x)
  Tensor<T, D> operator()(const Tensor<T, D>& x, const CrossKV<T, D>& kv, const Tensor<T, D>& mask,
                          const Tensor<int64_t, D>& kv_index, Branch branch) const {
    const Tensor<T, D> q = detail::split_heads(query(x, branch), heads);
    const Tensor<T, D> context = scaled_dot_product_attention(q, kv.key, kv.value, mask, 0.0, kv_index);
    return norm(add(dense(detail::merge_heads(context), branch), x), branch);
  }
  template <class F>
  void visit_parameters(F&& f, const std::string& prefix) {
    query.visit_parameters(f, join_name(prefix, "self.query"));
    key.visit_parameters(f, join_name(prefix, "self.key"));
    value.visit_parameters(f, join_name(prefix, "self.value"));
    dense.visit_parameters(f, join_name(prefix, "output.dense"));
    norm.visit_parameters(f, join_name(prefix, "output.LayerNorm"));
  }
};

template <CrossAttentionChoice Cross, Activation Act, Differentiable T, Device D>
class TransformerLayer<PostNorm, Cross, Act, T, D> {
 public:
  using value_type = T;
  using device_type = D;
  static constexpr bool has_cross_attention = std::same_as<Cross, WithCrossAttention>;

  explicit TransformerLayer(const LayerSizes& sizes)
      : attention(sizes.width, sizes.width, sizes.heads, sizes.eps),
        intermediate(sizes.width, sizes.ffn),
        output(sizes.ffn, sizes.width),
        output_norm(sizes.width, sizes.eps) {
    sizes.check("TransformerLayer<PostNorm>");
    if constexpr (has_cross_attention)
      crossattention.emplace(sizes.width, sizes.cross_width > 0 ? sizes.cross_width : sizes.width, sizes.heads, sizes.eps);
  }

  // cross == nullptr: text mode (self-attention only).
  Tensor<T, D> operator()(const Tensor<T, D>& x, const Tensor<T, D>& self_mask, const CrossKV<T, D>* cross,
                          const Tensor<int64_t, D>& kv_index, Branch branch = Branch::online,
                          Tokens out = Tokens::all) const {
    const CrossKV<T, D> self_kv = attention.keys_values(x, branch);
    Tensor<T, D> h = attention(out == Tokens::cls ? narrow(x, 1, 0, 1) : x, self_kv, self_mask, {}, branch);
    if (cross) {
      if constexpr (has_cross_attention) {
        h = (*crossattention)(h, *cross, Tensor<T, D>(), kv_index, branch);
      } else {
        fail("TransformerLayer<PostNorm, NoCrossAttention>: a multimodal pass needs a layer with cross-attention");
      }
    }
    return output_norm(add(detail::ffn<Act>(h, intermediate, output, branch), h), branch);
  }

  CrossKV<T, D> cross_keys_values(const Tensor<T, D>& image_embeds, Branch branch = Branch::online) const {
    if constexpr (has_cross_attention) return crossattention->keys_values(image_embeds, branch);
    else fail("TransformerLayer<PostNorm, NoCrossAttention>: no cross-attention keys/values");
  }

  template <class F>
  void visit_parameters(F&& f, const std::string& prefix) {
    attention.visit_parameters(f, join_name(prefix, "attention"));
    if constexpr (has_cross_attention) crossattention->visit_parameters(f, join_name(prefix, "crossattention"));
    intermediate.visit_parameters(f, join_name(prefix, "intermediate.dense"));
    output.visit_parameters(f, join_name(prefix, "output.dense"));
    output_norm.visit_parameters(f, join_name(prefix, "output.LayerNorm"));
  }

  BertAttentionBlock<T, D> attention;
  std::optional<BertAttentionBlock<T, D>> crossattention;
  Linear<T, D> intermediate, output;
  LayerNorm<T, D> output_norm;
};

}  // namespace blip
