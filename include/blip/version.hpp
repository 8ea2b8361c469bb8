// blip/version.hpp — the library version (kept equal to CMakeLists.txt's project version).
#pragma once

#define BLIP_VERSION_MAJOR 0
#define BLIP_VERSION_MINOR 1
#define BLIP_VERSION_PATCH 0

namespace blip {
inline constexpr const char* version = "0.1.0";
}
