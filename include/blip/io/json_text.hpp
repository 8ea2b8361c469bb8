// blip/io/json_text.hpp — parsing JSON that comes from a file, with bounded nesting, and
// quoting JSON values in messages without printing them whole.
//
// Contract: parse_json_text(text, what) first scans the text (strings and escapes skipped) and
// refuses more than kMaxJsonDepth levels of [ and { with blip::Error naming `what` and the byte
// offset, then parses it with nlohmann; a syntax error names `what` and the byte offset too.
// Bounding the depth before parsing matters because nlohmann's copy, comparison and dump()
// recurse, so a value ~70k levels deep (140 KB of "[[[[") overflows the stack later, wherever it
// is used. json_excerpt(value) is the value's compact text cut to `max_chars` (invalid UTF-8
// replaced), for error messages: hostile values can be megabytes long. read_json_file(path,
// what, max_bytes) reads a regular file of at most max_bytes (io/regular_file.hpp) and parses it
// so, naming it "<what> '<path>'".
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "blip/core/error.hpp"
#include "blip/io/regular_file.hpp"

namespace blip::io {

// Deep enough for every format blip reads (safetensors headers: 3, annotations: 4, training
// state: 4), shallow enough for nlohmann's recursion on any thread's stack.
inline constexpr uint32_t kMaxJsonDepth = 64;

// Throws unless every [ / { in `text` (outside strings) nests at most max_depth levels.
inline void check_json_depth(std::string_view text, const std::string& what, uint32_t max_depth = kMaxJsonDepth) {
  uint32_t depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;  // the escaped character cannot end the string
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      BLIP_CHECK(++depth <= max_depth, what, ": JSON nests deeper than ", max_depth, " levels at byte ", i);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
}

// nlohmann's messages quote the offending token, which a hostile file can make megabytes long.
inline std::string cut(std::string s, size_t max_chars = 200) {
  if (s.size() > max_chars) s = s.substr(0, max_chars) + "... (" + std::to_string(s.size()) + " chars)";
  return s;
}

inline nlohmann::json parse_json_text(std::string_view text, const std::string& what) {
  check_json_depth(text, what);
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::parse_error& e) {
    fail(what, ": invalid JSON at byte ", e.byte, ": ", cut(e.what()));
  } catch (const nlohmann::json::exception& e) {  // e.g. a number too large for a double
    fail(what, ": invalid JSON: ", cut(e.what()));
  }
}

inline nlohmann::json read_json_file(const std::string& path, const char* what, uint64_t max_bytes = uint64_t{64} << 20) {
  const std::vector<uint8_t> bytes = read_regular_file(path, max_bytes, what);
  return parse_json_text(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
                         str(what, " '", path, "'"));
}

template <class Json>
std::string json_excerpt(const Json& value, size_t max_chars = 80) {
  return cut(value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), max_chars);
}

}  // namespace blip::io
