# The demo models of `make run` (`infermesh demo-model`, full size) against ONNX Runtime and
# Hugging Face tokenizers from tools/ref: encoder embeddings, tokenizer ids and the MLP.
#
#   ctest --test-dir build/release -R integration_demo_model --output-on-failure
add_test(NAME integration_demo_model
         COMMAND node ${CMAKE_CURRENT_LIST_DIR}/demo_model_test.js $<TARGET_FILE:infermesh>
                 ${CMAKE_BINARY_DIR}/integration/demo_model
                 ${PROJECT_SOURCE_DIR}/tools/ref/node_modules)
set_tests_properties(integration_demo_model PROPERTIES LABELS integration TIMEOUT 300)
