// tools/blip/feature_rows.hpp — what names the rows `blip embed` and `blip score` write: the
// images under a folder by their sorted relative paths, and a row-names text file.
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <blip/search/gallery.hpp>

namespace blip::cli {

// The images under `dir` (gallery.hpp's listing: sorted, recursive) and their paths relative
// to it, which name the rows of what embed and score write.
struct ImageList {
  std::vector<std::string> paths, names;
};

inline ImageList list_images(const std::string& dir, bool skip_errors, const char* command) {
  search::ListOptions list;
  list.skip_errors = skip_errors;
  list.warn = [command](const std::string& w) { std::fprintf(stderr, "blip %s: warning: %s\n", command, w.c_str()); };
  ImageList out;
  out.paths = search::list_image_files(dir, list);
  const std::string root = search::listing_root(dir);
  for (const std::string& p : out.paths)
    out.names.push_back(p.compare(0, root.size() + 1, root + "/") == 0 ? p.substr(root.size() + 1) : p);
  return out;
}

// Rows of names, one per line (names with a line break are written with it escaped as \n).
inline std::string row_names_text(const std::vector<std::string>& names) {
  std::string text;
  for (const std::string& n : names) {
    for (char c : n) text += c == '\n' ? std::string("\\n") : c == '\\' ? std::string("\\\\") : std::string(1, c);
    text += '\n';
  }
  return text;
}

}  // namespace blip::cli
