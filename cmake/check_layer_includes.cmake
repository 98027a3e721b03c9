# Fails when a source or header of one layer folder includes a path that climbs out of what the
# compiler lets the layer see: an absolute path or one with a `..` component. The include root
# of each layer (MODCACHE_SEES_* in CMakeLists.txt) refuses another layer's internal header
# named from the root, but the compiler also looks next to the including file first, where
# "../cached/cached_internal.h" from lib/host/ would reach it; this closes that way round.
#   cmake -DLAYER_DIR=<folder> [-DSTAMP=<file to touch when clean>] -P check_layer_includes.cmake
if(NOT LAYER_DIR)
  message(FATAL_ERROR "check_layer_includes: LAYER_DIR is not set")
endif()
file(GLOB files "${LAYER_DIR}/*.c" "${LAYER_DIR}/*.h")
set(bad "")
foreach(f IN LISTS files)
  file(STRINGS "${f}" lines REGEX "^[ \t]*#[ \t]*include")
  foreach(line IN LISTS lines)
    if(line MATCHES "^[ \t]*#[ \t]*include[ \t]*[\"<]([^\">]*)[\">]")
      set(path "${CMAKE_MATCH_1}")
      if(path MATCHES "^/" OR path MATCHES "(^|/)\\.\\.(/|$)")
        string(APPEND bad "${f}: #include of ${path} climbs out of the layer's include root; name a "
                          "header the layer sees (its folder, core/, or a narrow header declared for it)\n")
      endif()
    endif()
  endforeach()
endforeach()
if(bad)
  message(FATAL_ERROR "${bad}")
endif()
if(STAMP)
  file(TOUCH "${STAMP}")
endif()
