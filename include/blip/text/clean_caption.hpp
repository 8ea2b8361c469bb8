// blip/text/clean_caption.hpp — mmpretrain's CleanCaption, with Python 3 str semantics.
//
// Contract: strip() (Python whitespace) -> remove the 32 ASCII punctuation characters ->
// collapse runs of 2+ whitespace (Python re's \s) into one space -> lower() (Python's full
// lowercase: U+0130 becomes "i" + U+0307, and capital sigma becomes final sigma at the end
// of a word). No second strip: "hello ." becomes "hello ". Options mirror the transform's
// arguments. Invalid UTF-8 is first replaced by U+FFFD.
#pragma once

#include "blip/text/utf8.hpp"

namespace blip::text {

struct CleanCaptionOptions {
  std::u32string remove_chars = U"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";  // string.punctuation
  bool lowercase = true;
  bool remove_dup_space = true;
  bool strip = true;
};

namespace detail {

// Unicode "Cased" and "Case_Ignorable" as CPython's final-sigma rule uses them, from utf8proc
// categories and case mappings.
inline bool is_cased(char32_t c) {
  const auto k = category(c);
  return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT ||
         utf8proc_islower(static_cast<utf8proc_int32_t>(c)) || utf8proc_isupper(static_cast<utf8proc_int32_t>(c));
}
inline bool is_case_ignorable(char32_t c) {
  const auto k = category(c);
  if (k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_ME || k == UTF8PROC_CATEGORY_CF ||
      k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_SK)
    return true;
  // Word_Break MidLetter / MidNumLet / Single_Quote
  switch (c) {
    case U'\'': case U'.': case U':': case 0x00B7: case 0x0387: case 0x055F: case 0x05F4: case 0x2018: case 0x2019:
    case 0x2024: case 0x2027: case 0xFE13: case 0xFE52: case 0xFE55: case 0xFF07: case 0xFF0E: case 0xFF1A:
      return true;
    default:
      return false;
  }
}

inline CodePoints python_lower(const CodePoints& s) {
  CodePoints out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const char32_t c = s[i];
    if (c == 0x0130) {  // SpecialCasing: İ -> i + combining dot above
      out.push_back(U'i');
      out.push_back(0x0307);
    } else if (c == 0x03A3) {
      size_t j = i;
      while (j > 0 && is_case_ignorable(s[j - 1])) --j;
      bool final_sigma = j > 0 && is_cased(s[j - 1]);
      if (final_sigma) {
        size_t k = i + 1;
        while (k < s.size() && is_case_ignorable(s[k])) ++k;
        final_sigma = k == s.size() || !is_cased(s[k]);
      }
      out.push_back(final_sigma ? char32_t{0x03C2} : char32_t{0x03C3});
    } else {
      out.push_back(simple_lower(c));
    }
  }
  return out;
}

}  // namespace detail

inline std::string clean_caption(std::string_view text, const CleanCaptionOptions& options = {}) {
  CodePoints s = decode(text);
  if (options.strip) {
    size_t begin = 0, end = s.size();
    while (begin < end && is_python_space(s[begin])) ++begin;
    while (end > begin && is_python_space(s[end - 1])) --end;
    s = CodePoints(s.begin() + static_cast<std::ptrdiff_t>(begin), s.begin() + static_cast<std::ptrdiff_t>(end));
  }
  if (!options.remove_chars.empty()) {
    CodePoints kept;
    for (char32_t c : s)
      if (options.remove_chars.find(c) == std::u32string::npos) kept.push_back(c);
    s = std::move(kept);
  }
  if (options.remove_dup_space) {
    CodePoints collapsed;
    for (size_t i = 0; i < s.size();) {
      if (is_python_space(s[i])) {
        size_t j = i;
        while (j < s.size() && is_python_space(s[j])) ++j;
        if (j - i >= 2) collapsed.push_back(U' ');
        else collapsed.push_back(s[i]);
        i = j;
      } else {
        collapsed.push_back(s[i++]);
      }
    }
    s = std::move(collapsed);
  }
  if (options.lowercase) s = detail::python_lower(s);
  return encode(s);
}

}  // namespace blip::text
