// blip/models/standard_instances.hpp — the standard models' classes, instantiated once.
//
// Contract: with BLIP_STANDARD_MODELS_COMPILED defined (the blip::models CMake target defines it
// for its users), every class of StandardBlip<float, Cpu> — the model, its backbones, layers,
// attention blocks, heads, linear/norm/embedding layers, parameters and the float / int64 CPU
// tensors — is declared `extern template` here and instantiated once in src/models/
// standard_models.cpp, so a translation unit that builds, loads, runs or trains the standard model
// does not compile its members (and the kernels they reach) again. Without the macro this header
// declares nothing and everything stays header-only. Member templates (visit_parameters and the
// like) and free op templates are still instantiated where they are used.
#pragma once

#include "blip/models/presets.hpp"

// X(...) is applied to each class (variadic: the commas of the template arguments pass through).
#define BLIP_STANDARD_MODEL_CLASSES(X)                                              \
  X(Tensor<float, Cpu>)                                                             \
  X(Tensor<int64_t, Cpu>)                                                           \
  X(Parameter<float, Cpu>)                                                          \
  X(Linear<float, Cpu>)                                                             \
  X(LayerNorm<float, Cpu>)                                                          \
  X(Embedding<float, Cpu>)                                                          \
  X(BertAttentionBlock<float, Cpu>)                                                 \
  X(TransformerLayer<PreNorm, NoCrossAttention, GeluErf, float, Cpu>)               \
  X(TransformerLayer<PostNorm, WithCrossAttention, GeluErf, float, Cpu>)            \
  X(VisionTransformer<TransformerLayer<PreNorm, NoCrossAttention, GeluErf, float, Cpu>>) \
  X(BertEncoder<TransformerLayer<PostNorm, WithCrossAttention, GeluErf, float, Cpu>>)    \
  X(ItcHead<float, Cpu>)                                                            \
  X(ItmHead<NoPooler, float, Cpu>)                                                  \
  X(BlipRetrieval<VisionTransformer<TransformerLayer<PreNorm, NoCrossAttention, GeluErf, float, Cpu>>,             \
                  BertEncoder<TransformerLayer<PostNorm, WithCrossAttention, GeluErf, float, Cpu>>, Linear<float, Cpu>, \
                  Linear<float, Cpu>, ItcHead<float, Cpu>, ItmHead<NoPooler, float, Cpu>>)

#if defined(BLIP_STANDARD_MODELS_COMPILED) && !defined(BLIP_STANDARD_MODELS_DEFINE)
namespace blip {
#define BLIP_EXTERN_CLASS(...) extern template class __VA_ARGS__;
BLIP_STANDARD_MODEL_CLASSES(BLIP_EXTERN_CLASS)
#undef BLIP_EXTERN_CLASS
}  // namespace blip
#endif
