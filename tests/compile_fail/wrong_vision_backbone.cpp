// Must NOT compile: a Linear layer in the vision-backbone slot.
#include <blip/models/presets.hpp>

using Broken = blip::BlipRetrieval<blip::Linear<float, blip::Cpu>, blip::StandardBertEncoder<>>;

int main() {
  Broken model(blip::presets::tiny());
  return 0;
}
