// blip/core/error.hpp — the one exception type of the library and the checks that throw it.
//
// Contract: every precondition failure (bad shape, device, axis, index, file content) throws
// blip::Error whose message starts with the operation's name and states the offending values.
// Nothing in the library aborts or returns a silently wrong result on bad input.
#pragma once

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace blip {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

inline void append(std::ostringstream&) {}

template <class First, class... Rest>
void append(std::ostringstream& os, const First& first, const Rest&... rest) {
  if constexpr (requires { first.begin(); first.end(); } &&
                !std::is_convertible_v<First, std::string>) {
    os << '[';
    bool comma = false;
    for (const auto& v : first) {
      if (comma) os << ", ";
      os << v;
      comma = true;
    }
    os << ']';
  } else {
    os << first;
  }
  append(os, rest...);
}

}  // namespace detail

// Concatenates its arguments into a string; containers print as [a, b, c] (shapes, indices).
template <class... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  detail::append(os, args...);
  return os.str();
}

template <class... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(str(args...));
}

}  // namespace blip

// BLIP_CHECK(condition, message parts...): throws blip::Error built from the parts when false.
#define BLIP_CHECK(cond, ...)           \
  do {                                  \
    if (!(cond)) ::blip::fail(__VA_ARGS__); \
  } while (false)
