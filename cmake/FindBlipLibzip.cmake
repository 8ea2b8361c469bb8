# Finds libzip (Debian: libzip-dev) and defines BlipLibzip::zip.
# Not find_package(libzip CONFIG): Debian's libzip 1.7.3 config imports the zipcmp/zipmerge/
# ziptool programs too and fails when libzip-tools is not installed.
find_path(BlipLibzip_INCLUDE_DIR zip.h)
find_library(BlipLibzip_LIBRARY NAMES zip)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(BlipLibzip REQUIRED_VARS BlipLibzip_LIBRARY BlipLibzip_INCLUDE_DIR)
if(BlipLibzip_FOUND AND NOT TARGET BlipLibzip::zip)
  add_library(BlipLibzip::zip UNKNOWN IMPORTED)
  set_target_properties(BlipLibzip::zip PROPERTIES
    IMPORTED_LOCATION "${BlipLibzip_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${BlipLibzip_INCLUDE_DIR}")
endif()
mark_as_advanced(BlipLibzip_INCLUDE_DIR BlipLibzip_LIBRARY)
