# libFuzzer target for the configuration parser (src/core/config.cc); fuzz preset only.
#   cmake --preset fuzz && cmake --build --preset fuzz --target config_fuzz
#   build/fuzz/tests/config_fuzz -max_total_time=60 tests/fuzz/corpus/config
if(INFERMESH_FUZZ)
  add_executable(config_fuzz ${CMAKE_CURRENT_LIST_DIR}/config_fuzz.cc)
  target_compile_options(config_fuzz PRIVATE -fsanitize=fuzzer)
  target_link_options(config_fuzz PRIVATE -fsanitize=fuzzer)
  target_link_libraries(config_fuzz PRIVATE infermesh_core)
  infermesh_warnings(config_fuzz)
  add_dependencies(fuzzers config_fuzz)
endif()
