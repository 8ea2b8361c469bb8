# Finds oneDNN (Debian: libdnnl-dev) and defines the imported target BlipDnnl::dnnl.
# Why not oneDNN's own dnnl-config.cmake: Debian's asks for OpenCL development files (its GPU
# runtime), which a CPU build does not need; the shared library finds its OpenCL loader itself.
find_path(BlipDnnl_INCLUDE_DIR oneapi/dnnl/dnnl.hpp)
find_library(BlipDnnl_LIBRARY NAMES dnnl)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(BlipDnnl REQUIRED_VARS BlipDnnl_LIBRARY BlipDnnl_INCLUDE_DIR)
if(BlipDnnl_FOUND AND NOT TARGET BlipDnnl::dnnl)
  add_library(BlipDnnl::dnnl UNKNOWN IMPORTED)
  set_target_properties(BlipDnnl::dnnl PROPERTIES
    IMPORTED_LOCATION "${BlipDnnl_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${BlipDnnl_INCLUDE_DIR}")
endif()
mark_as_advanced(BlipDnnl_INCLUDE_DIR BlipDnnl_LIBRARY)
