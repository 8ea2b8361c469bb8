// The standard models' classes, instantiated once (include/blip/models/standard_instances.hpp):
// the one translation unit of the blip::models library.
#define BLIP_STANDARD_MODELS_DEFINE
#include "blip/blip.hpp"
#include "blip/models/standard_instances.hpp"

namespace blip {
#define BLIP_INSTANTIATE_CLASS(...) template class __VA_ARGS__;
BLIP_STANDARD_MODEL_CLASSES(BLIP_INSTANTIATE_CLASS)
#undef BLIP_INSTANTIATE_CLASS
}  // namespace blip
