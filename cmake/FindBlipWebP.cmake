# Finds libwebp (Debian: libwebp-dev) and defines BlipWebP::webp (decoding: webp/decode.h).
find_path(BlipWebP_INCLUDE_DIR webp/decode.h)
find_library(BlipWebP_LIBRARY NAMES webp)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(BlipWebP REQUIRED_VARS BlipWebP_LIBRARY BlipWebP_INCLUDE_DIR)
if(BlipWebP_FOUND AND NOT TARGET BlipWebP::webp)
  add_library(BlipWebP::webp UNKNOWN IMPORTED)
  set_target_properties(BlipWebP::webp PROPERTIES
    IMPORTED_LOCATION "${BlipWebP_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${BlipWebP_INCLUDE_DIR}")
endif()
mark_as_advanced(BlipWebP_INCLUDE_DIR BlipWebP_LIBRARY)
