#pragma once
// The encoders' output buffer (internal to this folder): a growable byte array like std::string,
// plus GrowUninitialized, which lengthens it without writing the new bytes. std::string's resize
// zero-fills what it adds, and the pcapng writer then overwrites every byte of a run of packet
// blocks: at 64 B packets that zero-fill was ~4 % of capctl's CPU (perf, session 14).
// (C++23's std::string::resize_and_overwrite does the same; the project builds as C++20.)
//
// Not thread-safe. Pointers into it are valid until the next call that lengthens it.

#include <cstddef>
#include <cstring>
#include <memory>
#include <string_view>

namespace capd::capfile::internal {

class EncodeBuffer {
 public:
  EncodeBuffer() = default;
  EncodeBuffer(const EncodeBuffer&) = delete;
  EncodeBuffer& operator=(const EncodeBuffer&) = delete;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t capacity() const { return capacity_; }
  char* data() { return bytes_.get(); }
  const char* data() const { return bytes_.get(); }
  operator std::string_view() const { return {bytes_.get(), size_}; }

  // Keeps the capacity: a warmed-up encoder does not allocate again.
  void clear() { size_ = 0; }
  void reserve(size_t capacity) {
    if (capacity > capacity_) Reallocate(capacity);
  }

  // Lengthens the buffer by `n` bytes and returns where they start. Their content is
  // unspecified: the caller writes every one of them before the buffer is read.
  char* GrowUninitialized(size_t n) {
    if (n > capacity_ - size_) Reallocate(Grown(size_ + n));
    char* added = bytes_.get() + size_;
    size_ += n;
    return added;
  }

  void append(const char* bytes, size_t n) {
    if (n != 0) std::memcpy(GrowUninitialized(n), bytes, n);
  }
  void append(std::string_view bytes) { append(bytes.data(), bytes.size()); }
  void append(size_t n, char value) {
    if (n != 0) std::memset(GrowUninitialized(n), value, n);
  }
  // As std::string's: what it adds is zeros.
  void resize(size_t n) {
    if (n > size_) {
      append(n - size_, '\0');
    } else {
      size_ = n;
    }
  }

 private:
  size_t Grown(size_t needed) const { return needed > 2 * capacity_ ? needed : 2 * capacity_; }
  void Reallocate(size_t capacity) {
    auto bytes = std::make_unique_for_overwrite<char[]>(capacity);
    if (size_ != 0) std::memcpy(bytes.get(), bytes_.get(), size_);
    bytes_ = std::move(bytes);
    capacity_ = capacity;
  }

  std::unique_ptr<char[]> bytes_;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

}  // namespace capd::capfile::internal
