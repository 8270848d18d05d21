# libFuzzer target for the public API codecs (src/http/api); built in the `fuzz` preset.
if(INFERMESH_FUZZ)
  add_executable(api_json_fuzz ${CMAKE_CURRENT_LIST_DIR}/api_json_fuzz.cc)
  target_compile_options(api_json_fuzz PRIVATE -fsanitize=fuzzer)
  target_link_options(api_json_fuzz PRIVATE -fsanitize=fuzzer)
  target_link_libraries(api_json_fuzz PRIVATE infermesh_http)
  infermesh_warnings(api_json_fuzz)
  add_dependencies(fuzzers api_json_fuzz)
endif()
