#pragma once
// Whether bytes are well-formed UTF-8 (RFC 3629, Unicode's table 3-7): the shortest form of each
// code point, no UTF-16 surrogates (U+D800..U+DFFF), nothing above U+10FFFF, no sequence cut
// short. NUL is a code point like any other: rules about which characters a field may hold are
// the field's own. capd checks the text fields of a request with it (they are `bytes` on the wire,
// so that a request with bad text parses and is refused as INVALID_ARGUMENT by name of the field,
// instead of failing in protobuf's parser with a status that names nothing).

#include <cstddef>
#include <string_view>

namespace capd {

inline bool IsValidUtf8(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  auto continuation = [&](size_t at, unsigned char low = 0x80, unsigned char high = 0xbf) {
    return at < n && p[at] >= low && p[at] <= high;
  };
  while (i < n) {
    const unsigned char lead = p[i];
    if (lead < 0x80) {
      i += 1;
    } else if (lead >= 0xc2 && lead <= 0xdf) {  // 0xc0, 0xc1: overlong forms of ASCII
      if (!continuation(i + 1)) return false;
      i += 2;
    } else if (lead >= 0xe0 && lead <= 0xef) {
      // The second byte's range excludes overlong forms (E0) and surrogates (ED).
      const unsigned char low = lead == 0xe0 ? 0xa0 : 0x80;
      const unsigned char high = lead == 0xed ? 0x9f : 0xbf;
      if (!continuation(i + 1, low, high) || !continuation(i + 2)) return false;
      i += 3;
    } else if (lead >= 0xf0 && lead <= 0xf4) {  // 0xf5..0xff: beyond U+10FFFF
      // Overlong forms (F0) and code points above U+10FFFF (F4) show in the second byte.
      const unsigned char low = lead == 0xf0 ? 0x90 : 0x80;
      const unsigned char high = lead == 0xf4 ? 0x8f : 0xbf;
      if (!continuation(i + 1, low, high) || !continuation(i + 2) || !continuation(i + 3)) {
        return false;
      }
      i += 4;
    } else {
      return false;  // a continuation byte without a lead, or C0, C1, F5..FF
    }
  }
  return true;
}

}  // namespace capd
