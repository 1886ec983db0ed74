#pragma once
// A small status type for the control plane: set-up, I/O and request validation.
// The data plane does not use it per packet (counters instead). gRPC statuses are made from it
// in one place only (agent/service/status_mapping.h).

#include <string>
#include <utility>
#include <variant>

namespace capd {

enum class StatusCode {
  kOk,
  kInvalidArgument,     // the caller's input is wrong: a filter, a snaplen, a path
  kNotFound,            // a named thing does not exist: an interface
  kFailedPrecondition,  // the system is not in a state to do it
  kResourceExhausted,   // a limit was reached
  kAlreadyExists,       // a named thing to create exists already: a recording
  kPermissionDenied,    // the caller may not do it: no token, a refused user
  kUnavailable,         // a peer or reader went away; retrying later may work
  kInternal,            // a library or system call failed
};

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) {
  return {StatusCode::kInvalidArgument, std::move(m)};
}
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }

// capctl's exit code for a failure with this code: 2 for bad arguments or a request the agent
// refused as such (invalid, not found, a name in use; the agent's own "not possible now", such as
// an interface that is down, reaches here as kInvalidArgument), 1 for anything else (a local
// precondition such as a missing program, unreachable, refused access, too busy, internal).
inline int ExitCodeFor(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return 0;
    case StatusCode::kInvalidArgument:
    case StatusCode::kNotFound:
    case StatusCode::kAlreadyExists:
      return 2;
    default:
      return 1;
  }
}

// Either a value or the status saying why there is none.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(T value) : v_(std::move(value)) {}         // NOLINT(google-explicit-constructor)
  StatusOr(Status status) : v_(std::move(status)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  T& operator*() & { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace capd

#define CAPD_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::capd::Status capd_status_ = (expr);        \
    if (!capd_status_.ok()) return capd_status_; \
  } while (false)
