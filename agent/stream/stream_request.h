#pragma once
// What a StreamRequest may ask for, checked before any capture opens. Pure functions of the
// request (no libpcap, no network, no root): what the request fuzzer (tests/fuzz/request_fuzzer.cc)
// runs. Whether the filter compiles is checked later, when the capture opens (capd-filters).

#include <cstddef>
#include <cstdint>

#include "common/status.h"
#include "proto/capture.pb.h"

namespace capd::agent {

inline constexpr uint32_t kDefaultSnaplen = 262144;  // tcpdump's default since 4.99
inline constexpr size_t kMaxVnis = 4096;
inline constexpr size_t kMaxFilterBytes = 16 * 1024;
inline constexpr size_t kInterfaceNameBytes = 16;  // IFNAMSIZ, with its terminating NUL
inline constexpr uint64_t kMaxDurationMs = 30ULL * 24 * 3600 * 1000;
inline constexpr uint64_t kMaxPackets = 1ULL << 48;

// kInvalidArgument naming the bad field: text that is not UTF-8 (checked first, before the text
// is used or shown), a snaplen outside 1..262144, a filter or inner filter over 16 KiB, a
// duration over 30 days, a count over 2^48, an interface name that is not at most 15 characters
// of A-Z a-z 0-9 - _ . : @, more than 4096 VNIs or one that is not 24-bit.
Status ValidateStreamRequest(const v1::StreamRequest& request);

// `running` with `change` applied (ChangeStream): its filter, and for a mirror-target stream its
// VNIs and inner filter when present; then validated as a new stream's request. kInvalidArgument
// as ValidateStreamRequest's, or for VNIs or an inner filter on a plain stream.
StatusOr<v1::StreamRequest> ApplyChange(const v1::StreamRequest& running,
                                        const v1::ChangeStreamRequest& change);

}  // namespace capd::agent
