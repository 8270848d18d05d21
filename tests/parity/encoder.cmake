# Encoder parity: our runtime against PyTorch and ONNX Runtime on generated reference models.
#
#   ctest --test-dir build/fix -L parity -R encoder --output-on-failure
#
# The CTest fixture step `encoder_fixtures` runs tests/fixtures/make_encoders.py and
# make_hf_encoders.py (Hugging Face-shaped exports) once into
# ${CMAKE_BINARY_DIR}/fixtures (it skips models that are already up to date); every parity
# test requires it. INFERMESH_FIXTURE_DIR overrides the folder at run time.
set(INFERMESH_REFERENCE_PYTHON "/usr/bin/python3" CACHE FILEPATH
    "Python with torch and onnx (Debian's python3-torch, python3-onnx) for test fixtures")
set(INFERMESH_FIXTURE_DIR "${CMAKE_BINARY_DIR}/fixtures")

add_test(NAME encoder_fixtures
         COMMAND sh -c "\"$0\" \"$1/make_encoders.py\" --out \"$2\" && \"$0\" \"$1/make_hf_encoders.py\" --out \"$2\""
                 ${INFERMESH_REFERENCE_PYTHON} ${PROJECT_SOURCE_DIR}/tests/fixtures
                 ${INFERMESH_FIXTURE_DIR})
set_tests_properties(encoder_fixtures PROPERTIES FIXTURES_SETUP encoder_fixtures
                                                 LABELS parity TIMEOUT 600)

add_executable(encoder_parity_test ${CMAKE_CURRENT_LIST_DIR}/encoder_parity_test.cc)
target_link_libraries(encoder_parity_test PRIVATE infermesh_runtime GTest::gtest GTest::gtest_main)
target_compile_definitions(encoder_parity_test PRIVATE
                           INFERMESH_FIXTURE_DIR="${INFERMESH_FIXTURE_DIR}"
                           INFERMESH_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
infermesh_warnings(encoder_parity_test)
gtest_discover_tests(encoder_parity_test TEST_PREFIX "encoder_parity." NO_PRETTY_VALUES
                     DISCOVERY_TIMEOUT 60 PROPERTIES FIXTURES_REQUIRED encoder_fixtures LABELS parity TIMEOUT 300)
