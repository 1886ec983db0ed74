# Included by ctest (the root directory's TEST_INCLUDE_FILES) when the build has CAPD_SANITIZE
# set: every test, and every capd/capctl process an integration test starts, inherits these.
# The options for a sanitizer a binary was not built with are ignored.
#   ASan/UBSan: a report aborts the process, so it fails the test whatever the process does
#   next. TSan: reports do not halt (all races of a run are seen); the process exits 66.
#   suppressions: reports from inside the uninstrumented Debian libraries, each with its reason
#   in the file.
set(_dir "${CMAKE_CURRENT_LIST_DIR}")
if(NOT DEFINED ENV{ASAN_OPTIONS})
  set(ENV{ASAN_OPTIONS} "abort_on_error=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1")
endif()
if(NOT DEFINED ENV{LSAN_OPTIONS})
  set(ENV{LSAN_OPTIONS} "suppressions=${_dir}/lsan.supp:print_suppressions=0")
endif()
if(NOT DEFINED ENV{UBSAN_OPTIONS})
  set(ENV{UBSAN_OPTIONS} "suppressions=${_dir}/ubsan.supp:print_stacktrace=1:halt_on_error=1")
endif()
if(NOT DEFINED ENV{TSAN_OPTIONS})
  set(ENV{TSAN_OPTIONS} "suppressions=${_dir}/tsan.supp:second_deadlock_stack=1")
endif()
