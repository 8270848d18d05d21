# Finds every third-party dependency once, so that folders only link targets.
find_package(Threads REQUIRED)
find_package(Boost 1.81 REQUIRED COMPONENTS json)
find_package(spdlog REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
# Debian's dnnl-config.cmake demands OpenCL headers (its GPU build); we only use the
# CPU engine, so find the library directly.
find_path(DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.hpp REQUIRED)
find_library(DNNL_LIBRARY dnnl REQUIRED)
add_library(dnnl_dep INTERFACE)
target_include_directories(dnnl_dep SYSTEM INTERFACE ${DNNL_INCLUDE_DIR})
target_link_libraries(dnnl_dep INTERFACE ${DNNL_LIBRARY})
find_package(Protobuf REQUIRED)
# GoogleTest only for tests/: `make run` installs what running needs, without it.
find_package(GTest QUIET)
find_package(PkgConfig REQUIRED)
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)
pkg_check_modules(XXHASH REQUIRED IMPORTED_TARGET libxxhash)
pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)
pkg_check_modules(ZSTD REQUIRED IMPORTED_TARGET libzstd)
pkg_check_modules(SQLITE3 REQUIRED IMPORTED_TARGET sqlite3)

# Debian's libonnx-dev ships the generated protobuf headers and libonnx_proto.
find_path(ONNX_INCLUDE_DIR onnx/onnx_pb.h REQUIRED)
find_library(ONNX_PROTO_LIBRARY onnx_proto REQUIRED)
find_library(ONNX_LIBRARY onnx REQUIRED)
add_library(onnx_proto_dep INTERFACE)
target_include_directories(onnx_proto_dep SYSTEM INTERFACE ${ONNX_INCLUDE_DIR})
target_compile_definitions(onnx_proto_dep INTERFACE ONNX_NAMESPACE=onnx ONNX_ML=1)
target_link_libraries(onnx_proto_dep INTERFACE ${ONNX_LIBRARY} ${ONNX_PROTO_LIBRARY}
                                               protobuf::libprotobuf)
