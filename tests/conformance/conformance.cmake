# ONNX's official node tests: every test in expected_pass.txt must pass, so a
# regression in any operator fails CI. Regenerate the list with
# `scripts/update-conformance-list.sh` after adding operators.
add_test(NAME onnx_conformance
         COMMAND infermesh conformance --threads 2
                 --expect ${CMAKE_CURRENT_LIST_DIR}/expected_pass.txt
                 --known ${CMAKE_CURRENT_LIST_DIR}/known_issues.txt
                 --json ${CMAKE_BINARY_DIR}/conformance.json)
set_tests_properties(onnx_conformance PROPERTIES LABELS conformance TIMEOUT 600)
