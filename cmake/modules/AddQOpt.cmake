# Thin wrappers over MLIR's CMake functions, in the style of CIRCT.

# A library of the project linked against libMLIR.so (MLIR_LINK_MLIR_DYLIB).
function(add_qopt_library name)
  add_mlir_library(${ARGV})
endfunction()

function(add_qopt_dialect_library name)
  set_property(GLOBAL APPEND PROPERTY QOPT_DIALECT_LIBS ${name})
  add_mlir_dialect_library(${ARGV})
endfunction()

# Generates Markdown from TableGen into ${CMAKE_BINARY_DIR}/docs/<output_directory><doc_filename>.md
# and hangs it on the qopt-doc target.
function(add_qopt_doc td_filename output_file output_directory command)
  set(LLVM_TARGET_DEFINITIONS ${td_filename}.td)
  mlir_tablegen(${output_file}.md ${command} ${ARGN})
  set(generated "${CMAKE_CURRENT_BINARY_DIR}/${output_file}.md")
  set(dest "${CMAKE_BINARY_DIR}/docs/${output_directory}${output_file}.md")
  add_custom_command(OUTPUT ${dest}
    COMMAND ${CMAKE_COMMAND} -E copy ${generated} ${dest}
    DEPENDS ${generated})
  add_custom_target(${output_file}DocGen DEPENDS ${dest})
  add_dependencies(qopt-doc ${output_file}DocGen)
endfunction()
