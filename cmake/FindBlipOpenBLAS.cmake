# Finds OpenBLAS (Debian: libopenblas-openmp-dev or libopenblas-pthread-dev) and defines the
# imported target BlipOpenBLAS::OpenBLAS with the directory holding its cblas.h.
find_path(BlipOpenBLAS_INCLUDE_DIR cblas.h
  PATH_SUFFIXES openblas-openmp openblas-pthread openblas
  PATHS /usr/include/x86_64-linux-gnu /usr/include/aarch64-linux-gnu /usr/include)
find_library(BlipOpenBLAS_LIBRARY NAMES openblas
  PATH_SUFFIXES openblas-openmp openblas-pthread
  PATHS /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(BlipOpenBLAS REQUIRED_VARS BlipOpenBLAS_LIBRARY BlipOpenBLAS_INCLUDE_DIR)
if(BlipOpenBLAS_FOUND AND NOT TARGET BlipOpenBLAS::OpenBLAS)
  add_library(BlipOpenBLAS::OpenBLAS UNKNOWN IMPORTED)
  set_target_properties(BlipOpenBLAS::OpenBLAS PROPERTIES
    IMPORTED_LOCATION "${BlipOpenBLAS_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${BlipOpenBLAS_INCLUDE_DIR}")
endif()
mark_as_advanced(BlipOpenBLAS_INCLUDE_DIR BlipOpenBLAS_LIBRARY)
