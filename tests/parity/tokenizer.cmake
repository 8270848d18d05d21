# Tokenizer parity with Hugging Face tokenizers: builds the reference tokenizers with
# HF's own library (Node), encodes a >50k-line multilingual corpus with both, and
# requires identical ids and offsets on every line (and fails if the corpus has fewer
# than 50,000 lines).
add_executable(tokenizer_dump ${CMAKE_CURRENT_LIST_DIR}/tokenizer_dump.cc)
target_link_libraries(tokenizer_dump PRIVATE infermesh_runtime)
infermesh_warnings(tokenizer_dump)

add_test(NAME parity_tokenizer
         COMMAND ${CMAKE_CURRENT_LIST_DIR}/tokenizer_parity.sh
                 $<TARGET_FILE:tokenizer_dump> ${PROJECT_SOURCE_DIR}/tools/ref/node_modules
                 ${PROJECT_BINARY_DIR}/parity/tokenizer)
set_tests_properties(parity_tokenizer PROPERTIES LABELS parity TIMEOUT 300)
