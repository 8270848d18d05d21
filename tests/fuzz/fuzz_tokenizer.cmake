# libFuzzer target for the tokenizers (fuzz preset only).
#   cmake --preset fuzz -B build/fuzz-tok && cmake --build build/fuzz-tok --target tokenizer_fuzz
#   build/fuzz-tok/tests/tokenizer_fuzz -max_total_time=30 tests/fuzz/corpus/tokenizer
if(INFERMESH_FUZZ)
  add_executable(tokenizer_fuzz ${CMAKE_CURRENT_LIST_DIR}/tokenizer_fuzz.cc)
  target_compile_options(tokenizer_fuzz PRIVATE -fsanitize=fuzzer)
  target_link_options(tokenizer_fuzz PRIVATE -fsanitize=fuzzer)
  target_link_libraries(tokenizer_fuzz PRIVATE infermesh_runtime)
  infermesh_warnings(tokenizer_fuzz)
  add_dependencies(fuzzers tokenizer_fuzz)
endif()
