#pragma once
// The one grammar of sizes on capd's and capctl's command lines (--rotate-size, --min-free,
// --client-queue, --max-queue-bytes, --buffer-size): a decimal number of bytes with an optional
// suffix, its case free and a trailing B optional:
//   k, M, G, T        powers of 1000 (SI), as tcpdump -C and dumpcap -b filesize count files
//   KiB, MiB, GiB, TiB  powers of 1024 (IEC), for whoever wants a binary size exactly
// So "20k" is 20,000 bytes and "32MiB" 33,554,432. Counts (streams, files, seconds) take no
// suffix at all: they are not sizes.

#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>

namespace capd {

// Help text for flags that take a size.
inline constexpr char kByteSizeGrammar[] =
    "k, M, G = powers of 1000; KiB, MiB, GiB = powers of 1024";

// Bytes, or nullopt for anything that is not a size (empty, a sign, a fraction, an unknown
// suffix, more than 2^64 - 1 bytes).
inline std::optional<uint64_t> ParseByteSize(std::string_view text) {
  uint64_t value = 0;
  size_t i = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
    const uint64_t digit = static_cast<uint64_t>(text[i] - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  if (i == 0) return std::nullopt;
  std::string_view suffix = text.substr(i);
  auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
  if (!suffix.empty() && lower(suffix.back()) == 'b') suffix.remove_suffix(1);
  uint64_t base = 1000;
  if (suffix.size() == 2 && lower(suffix[1]) == 'i') {
    base = 1024;
    suffix.remove_suffix(1);
  } else if (suffix.size() > 1) {
    return std::nullopt;
  }
  int power = 0;
  if (!suffix.empty()) {
    switch (lower(suffix[0])) {
      case 'k':
        power = 1;
        break;
      case 'm':
        power = 2;
        break;
      case 'g':
        power = 3;
        break;
      case 't':
        power = 4;
        break;
      default:
        return std::nullopt;
    }
  }
  for (int p = 0; p < power; ++p) {
    if (value > std::numeric_limits<uint64_t>::max() / base) return std::nullopt;
    value *= base;
  }
  return value;
}

}  // namespace capd
