# blip_install_when_built(TARGET EXPORT_SET): installs an optional compiled component (blip::cuda,
# blip::models) and its export set only where the library was built. `cmake --install` straight
# after configuring (a header-only install) leaves the component out and removes its export file,
# so find_package(blip) does not promise a library that is not there.
function(blip_install_when_built target export_set)
  install(TARGETS ${target} EXPORT ${export_set} ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} OPTIONAL)
  install(EXPORT ${export_set} NAMESPACE blip:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/blip)
  install(CODE "
    if(NOT EXISTS \"$<TARGET_FILE:${target}>\")
      file(GLOB _exports \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/cmake/blip/${export_set}*.cmake\")
      if(_exports)
        file(REMOVE \${_exports})
      endif()
      message(STATUS \"blip: ${target} was not built (cmake --build first to install it); installed without it\")
    endif()")
endfunction()
