# Finds utf8proc (Debian: libutf8proc-dev) and defines BlipUtf8proc::utf8proc.
find_path(BlipUtf8proc_INCLUDE_DIR utf8proc.h)
find_library(BlipUtf8proc_LIBRARY NAMES utf8proc)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(BlipUtf8proc REQUIRED_VARS BlipUtf8proc_LIBRARY BlipUtf8proc_INCLUDE_DIR)
if(BlipUtf8proc_FOUND AND NOT TARGET BlipUtf8proc::utf8proc)
  add_library(BlipUtf8proc::utf8proc UNKNOWN IMPORTED)
  set_target_properties(BlipUtf8proc::utf8proc PROPERTIES
    IMPORTED_LOCATION "${BlipUtf8proc_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${BlipUtf8proc_INCLUDE_DIR}")
endif()
mark_as_advanced(BlipUtf8proc_INCLUDE_DIR BlipUtf8proc_LIBRARY)
