# docs/check_api_docs.cmake: the test_api_docs test. Runs Doxygen over include/ and fails when it
# reports a public function, type or macro without a comment, or any fault in a comment (which
# would show in the generated reference). Undocumented struct fields and enum values are listed
# but do not fail: the headers document them where a name alone does not say enough.
#
#   cmake -DDOXYGEN=<doxygen> -DDOXYFILE=<configured Doxyfile> -DLOG=<its WARN_LOGFILE>
#         -DINCLUDE_DIR=<include/> -P check_api_docs.cmake

foreach(var DOXYGEN DOXYFILE LOG INCLUDE_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_api_docs.cmake needs -D${var}=...")
  endif()
endforeach()

# A stale log would hide a run that wrote none; Doxygen opens the log before it creates its
# output directory.
file(REMOVE "${LOG}")
get_filename_component(logdir "${LOG}" DIRECTORY)
file(MAKE_DIRECTORY "${logdir}")
execute_process(COMMAND "${DOXYGEN}" "${DOXYFILE}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "doxygen exited with ${rc}:\n${out}${err}")
endif()
if(NOT EXISTS "${LOG}")
  message(FATAL_ERROR "doxygen wrote no warning log at ${LOG}")
endif()

# Lines as a list: semicolons in messages would split them, so replace them first.
file(READ "${LOG}" text)
string(REPLACE ";" "," text "${text}")
string(REPLACE "\n" ";" lines "${text}")
set(faults "")
set(notes "")
set(nfaults 0)
set(nnotes 0)
foreach(line IN LISTS lines)
  if(line STREQUAL "")
    continue()
  endif()
  if(line MATCHES "\\((variable|enumvalue)\\) of (struct|union|enum) .* is not documented")
    string(APPEND notes "  ${line}\n")
    math(EXPR nnotes "${nnotes} + 1")
  else()
    string(APPEND faults "  ${line}\n")
    math(EXPR nfaults "${nfaults} + 1")
  endif()
endforeach()

# What was checked, for the log: the declarations Doxygen had to find documented.
file(GLOB headers "${INCLUDE_DIR}/*.h" "${INCLUDE_DIR}/modcache/*.h")
set(nfunctions 0)
set(nmacros 0)
foreach(h IN LISTS headers)
  file(STRINGS "${h}" fns REGEX "^MC_API |^static inline ")
  file(STRINGS "${h}" defs REGEX "^#define MC_")
  list(LENGTH fns n)
  math(EXPR nfunctions "${nfunctions} + ${n}")
  list(LENGTH defs n)
  math(EXPR nmacros "${nmacros} + ${n}")
endforeach()
list(LENGTH headers nheaders)
message(STATUS "${nheaders} headers, ${nfunctions} functions, ${nmacros} MC_ macros; "
               "${nnotes} undocumented struct fields or enum values (not required)")
if(nnotes GREATER 0)
  message(STATUS "Undocumented fields and values:\n${notes}")
endif()
if(nfaults GREATER 0)
  message(FATAL_ERROR "${nfaults} problem(s) in the API documentation: a public function, type or "
                      "macro without a comment (add one above it in the header), or a comment "
                      "Doxygen cannot render:\n${faults}")
endif()
message(STATUS "Every public function, type and macro is documented; no comment faults.")
