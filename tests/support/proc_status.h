#pragma once
// What a running process looks like from /proc, for tests that check capd's credentials and its
// resource use (RSS, open file descriptors) from the outside, as an operator would.

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"

namespace capd::test {

// The "Key:\tvalue" lines of /proc/<pid>/status (or of /proc/<pid>/task/<tid>/status when `tid`
// is given), value with surrounding whitespace removed, e.g. {"CapEff", "0000000000003000"}.
StatusOr<std::map<std::string, std::string>> ReadProcStatus(pid_t pid, pid_t tid = 0);

// VmRSS of the process in bytes (the kernel reports kB).
StatusOr<uint64_t> ResidentBytes(pid_t pid);

// Entries of /proc/<pid>/fd: the process's open file descriptors.
StatusOr<size_t> OpenFdCount(pid_t pid);

// /proc/<pid>/fd as "fd -> target" lines, for a failure message that shows what leaked.
std::string DescribeOpenFds(pid_t pid);

// The ids of the process's threads (/proc/<pid>/task).
StatusOr<std::vector<pid_t>> ThreadIds(pid_t pid);

// The name (comm) of one thread, "" when it has ended.
std::string ThreadName(pid_t pid, pid_t tid);

// AddressSanitizer keeps freed memory in quarantine (256 MiB by default) and never returns its
// heap, so a sanitized capd's RSS says nothing about its own memory bounds: tests that assert
// RSS bounds report the figures but assert them only in normal builds.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kRssBoundsMeaningful = false;
#else
inline constexpr bool kRssBoundsMeaningful = true;
#endif

}  // namespace capd::test
