# libuvit.so: the C API (include/uvit.h) over the static library, exporting only the uvit_*
# functions (hidden visibility, archive symbols hidden); the install rules, the CMake package
# (uvit::uvit = the C API, uvit::uvit_static = the C++ library) and uvit.pc. docs/c_api.md.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# uvit.h's version macros must match the project's version.
file(STRINGS ${CMAKE_SOURCE_DIR}/include/uvit.h _uvit_h_version REGEX "#define UVIT_VERSION_(MAJOR|MINOR|PATCH) ")
string(REGEX REPLACE "[^0-9;]" "" _uvit_h_version "${_uvit_h_version}")
string(REPLACE ";" "." _uvit_h_version "${_uvit_h_version}")
if(NOT _uvit_h_version STREQUAL PROJECT_VERSION)
  message(FATAL_ERROR "include/uvit.h says version ${_uvit_h_version}, CMakeLists.txt ${PROJECT_VERSION}")
endif()

add_library(uvit_c SHARED src/capi/uvit_c.cpp)
set_target_properties(uvit_c PROPERTIES OUTPUT_NAME uvit EXPORT_NAME uvit
  VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}
  C_VISIBILITY_PRESET hidden CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
target_compile_definitions(uvit_c PRIVATE UVIT_BUILD)
target_compile_options(uvit_c PRIVATE ${UVIT_FLAGS})
target_include_directories(uvit_c PUBLIC $<BUILD_INTERFACE:${CMAKE_SOURCE_DIR}/include>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
target_link_libraries(uvit_c PRIVATE uvitlib)
# clang's sanitizer runtimes live in the executable, so a sanitized libuvit.so has undefined
# __asan_* references by design (docs/fuzzing.md).
if(NOT (UVIT_SANITIZE AND CMAKE_CXX_COMPILER_ID MATCHES "Clang"))
  target_link_options(uvit_c PRIVATE -Wl,--no-undefined)
endif()
target_link_options(uvit_c PRIVATE -Wl,--exclude-libs,ALL
  -Wl,--version-script=${CMAKE_SOURCE_DIR}/cmake/uvit.map)
set_target_properties(uvit_c PROPERTIES LINK_DEPENDS ${CMAKE_SOURCE_DIR}/cmake/uvit.map)

# The installed targets carry their link folders (CUDA's, OpenMPI's) as their run path and are
# built with it, not with a build path CMake edits at install: that one is padded with a trailing
# ':', an empty entry the loader reads as the current folder (any libz.so.1 in the folder a user
# runs uvit from would be loaded). tests/e2e/runpath.sh.
set_target_properties(uvit uvit_c PROPERTIES BUILD_WITH_INSTALL_RPATH ON
  INSTALL_RPATH_USE_LINK_PATH ON)
install(TARGETS uvit RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS uvit_c uvitlib EXPORT uvitTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${CMAKE_SOURCE_DIR}/include/uvit.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# The presets and the CLIP vocabulary, so that an installed uvit (or a program that links
# libuvit.so) needs no source tree: found from the program's or the library's folder through these
# relative paths, and last (a program that links libuvit.a, installed anywhere) at the configured
# prefix's absolute data dir (src/core/install_dirs.cpp; set on that file alone, so no other file
# rebuilds).
install(DIRECTORY ${CMAKE_SOURCE_DIR}/configs/ DESTINATION ${CMAKE_INSTALL_DATADIR}/uvit/configs
  FILES_MATCHING PATTERN "*.json")
install(FILES ${CMAKE_SOURCE_DIR}/data/clip/bpe_simple_vocab_16e6.txt.gz
  ${CMAKE_SOURCE_DIR}/data/clip/LICENSE DESTINATION ${CMAKE_INSTALL_DATADIR}/uvit/clip)
file(RELATIVE_PATH _uvit_bin_to_data ${CMAKE_INSTALL_FULL_BINDIR} ${CMAKE_INSTALL_FULL_DATADIR})
file(RELATIVE_PATH _uvit_lib_to_data ${CMAKE_INSTALL_FULL_LIBDIR} ${CMAKE_INSTALL_FULL_DATADIR})
set_property(SOURCE ${CMAKE_SOURCE_DIR}/src/core/install_dirs.cpp APPEND PROPERTY
  COMPILE_DEFINITIONS UVIT_BIN_TO_DATA="${_uvit_bin_to_data}" UVIT_LIB_TO_DATA="${_uvit_lib_to_data}"
  UVIT_INSTALL_DATA_DIR="${CMAKE_INSTALL_FULL_DATADIR}/uvit")
install(DIRECTORY ${CMAKE_SOURCE_DIR}/include/uvit DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT uvitTargets NAMESPACE uvit:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/uvit)
configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/uvitConfig.cmake.in
  ${CMAKE_BINARY_DIR}/uvitConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/uvit)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/uvitConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_BINARY_DIR}/uvitConfig.cmake ${CMAKE_BINARY_DIR}/uvitConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/uvit)
# uvit.pc finds its prefix from its own folder, so `cmake --install --prefix P` works anywhere.
file(RELATIVE_PATH UVIT_PC_TO_PREFIX ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig ${CMAKE_INSTALL_PREFIX})
configure_file(${CMAKE_SOURCE_DIR}/cmake/uvit.pc.in ${CMAKE_BINARY_DIR}/uvit.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/uvit.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
