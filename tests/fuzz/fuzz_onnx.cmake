# libFuzzer targets are built only in the `fuzz` preset (clang, ASan+UBSan).
if(INFERMESH_FUZZ)
  add_executable(onnx_loader_fuzz ${CMAKE_CURRENT_LIST_DIR}/onnx_loader_fuzz.cc)
  target_compile_options(onnx_loader_fuzz PRIVATE -fsanitize=fuzzer)
  target_link_options(onnx_loader_fuzz PRIVATE -fsanitize=fuzzer)
  target_link_libraries(onnx_loader_fuzz PRIVATE infermesh_runtime)
  infermesh_warnings(onnx_loader_fuzz)
  add_dependencies(fuzzers onnx_loader_fuzz)
endif()
