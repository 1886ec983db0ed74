#pragma once
// Which lines of a TLS key log capd passes on: only lines of the NSS key-log format
// (https://firefox-source-docs.mozilla.org/security/nss/legacy/key_log_format/), which is what
// Wireshark reads from a Decryption Secrets Block of type TLSK. A key log is written by other
// processes (anything with SSLKEYLOGFILE), so everything else (comments, torn or foreign text)
// is dropped here rather than sent to a client. Pure functions, no I/O.

#include <cstddef>
#include <string>
#include <string_view>

namespace capd::agent::keylog {

// Longer than any line of the format (the longest label, 64 hex digits of client random and 96
// of a SHA-384 secret come to ~190 bytes): a longer line is not one.
inline constexpr size_t kMaxLineBytes = 512;

// True for "LABEL <hex> <hex>" with a label of the format (CLIENT_RANDOM, RSA, and the TLS 1.3
// secrets), the first field 64 hex digits (the client random; 16 for RSA's encrypted
// pre-master secret prefix) and the second an even number of hex digits from 32 to 256. `line`
// has no line end; one trailing '\r' is tolerated (a key log written on Windows).
bool IsKeyLogLine(std::string_view line);

// Appends the lines of `text` (complete lines, each ending in '\n') that IsKeyLogLine accepts to
// `out`, each with a '\n' and no '\r'; returns how many lines it dropped.
size_t AppendKeyLogLines(std::string_view text, std::string& out);

}  // namespace capd::agent::keylog
