// blip/text/utf8.hpp — UTF-8 <-> code points, and the Unicode properties the tokenizers need,
// all through utf8proc (no hand-written tables).
//
// Contract: decode() never fails: each invalid or truncated sequence becomes U+FFFD, which the
// BERT normaliser then drops, as the reference drops U+FFFD (Python strings cannot hold invalid
// UTF-8, so the reference has no behaviour of its own for it). Surrogates and overlong forms
// are invalid.
#pragma once

#include <utf8proc.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace blip::text {

using CodePoints = std::vector<char32_t>;

// Whether `s` is valid UTF-8 (what JSON text must be).
inline bool is_valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  utf8proc_ssize_t left = static_cast<utf8proc_ssize_t>(s.size());
  while (left > 0) {
    utf8proc_int32_t c;
    const utf8proc_ssize_t n = utf8proc_iterate(p, left, &c);
    if (n < 0) return false;
    p += n;
    left -= n;
  }
  return true;
}

inline CodePoints decode(std::string_view s) {
  CodePoints out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  utf8proc_ssize_t left = static_cast<utf8proc_ssize_t>(s.size());
  while (left > 0) {
    utf8proc_int32_t c;
    const utf8proc_ssize_t n = utf8proc_iterate(p, left, &c);
    if (n < 0) {  // invalid: replace one byte and go on
      out.push_back(0xFFFD);
      ++p;
      --left;
      continue;
    }
    out.push_back(static_cast<char32_t>(c));
    p += n;
    left -= n;
  }
  return out;
}

inline void append_utf8(std::string& out, char32_t c) {
  utf8proc_uint8_t buf[4];
  const utf8proc_ssize_t n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(c), buf);
  out.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

inline std::string encode(const CodePoints& cps, size_t begin = 0, size_t end = std::string::npos) {
  std::string out;
  end = std::min(end, cps.size());
  out.reserve(end - begin);
  for (size_t i = begin; i < end; ++i) append_utf8(out, cps[i]);
  return out;
}

inline utf8proc_category_t category(char32_t c) { return utf8proc_category(static_cast<utf8proc_int32_t>(c)); }

// Unicode White_Space (Rust's char::is_whitespace): Zs, Zl, Zp and \t \n \v \f \r U+0085.
inline bool is_white_space(char32_t c) {
  if (c == U'\t' || c == U'\n' || c == 0x0B || c == 0x0C || c == U'\r' || c == 0x85) return true;
  const auto k = category(c);
  return k == UTF8PROC_CATEGORY_ZS || k == UTF8PROC_CATEGORY_ZL || k == UTF8PROC_CATEGORY_ZP;
}

// Python's str.isspace(): bidirectional class WS, B or S, or category Zs.
inline bool is_python_space(char32_t c) {
  const utf8proc_property_t* p = utf8proc_get_property(static_cast<utf8proc_int32_t>(c));
  return p->category == UTF8PROC_CATEGORY_ZS || p->bidi_class == UTF8PROC_BIDI_CLASS_WS ||
         p->bidi_class == UTF8PROC_BIDI_CLASS_B || p->bidi_class == UTF8PROC_BIDI_CLASS_S;
}

inline char32_t simple_lower(char32_t c) { return static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))); }

// Canonical decomposition (NFD) of a code point sequence; keep_whole(c) true leaves c as it is
// (the tokenizers crate's NFD tables lag Unicode at a few code points).
template <class KeepWhole = bool (*)(char32_t)>
CodePoints nfd(const CodePoints& in, KeepWhole keep_whole = [](char32_t) { return false; }) {
  CodePoints out;
  out.reserve(in.size());
  utf8proc_int32_t buf[32];
  for (char32_t c : in) {
    if (keep_whole(c)) {
      out.push_back(c);
      continue;
    }
    int last = 0;
    const utf8proc_ssize_t n = utf8proc_decompose_char(static_cast<utf8proc_int32_t>(c), buf, 32,
                                                       static_cast<utf8proc_option_t>(UTF8PROC_DECOMPOSE), &last);
    if (n < 0 || n > 32) {
      out.push_back(c);
      continue;
    }
    for (utf8proc_ssize_t i = 0; i < n; ++i) out.push_back(static_cast<char32_t>(buf[i]));
  }
  // Canonical ordering of combining marks (stable sort by combining class within runs).
  for (size_t i = 1; i < out.size(); ++i) {
    const auto cc = [](char32_t c) { return utf8proc_get_property(static_cast<utf8proc_int32_t>(c))->combining_class; };
    for (size_t j = i; j > 0 && cc(out[j]) != 0 && cc(out[j - 1]) > cc(out[j]); --j) std::swap(out[j], out[j - 1]);
  }
  return out;
}

}  // namespace blip::text
