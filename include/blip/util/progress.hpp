// blip/util/progress.hpp — a one-line progress bar with rate and ETA for long loops.
//
// Contract: ProgressBar bar("extract images", total); bar.advance(n, "loss 0.42"); bar.finish();
// Draws to stderr, at most ~10 times a second, and only when stderr is a terminal unless
// `force` is set (so logs piped to a file get one final line, not thousands). `quiet` draws
// nothing at all. Safe to call from one thread only (the loop's owner).
#pragma once

#include <chrono>
#include <cstdio>
#include <string>
#include <unistd.h>

namespace blip {

class ProgressBar {
 public:
  using clock = std::chrono::steady_clock;

  ProgressBar(std::string label, long long total, bool quiet = false, std::string unit = "it",
              bool force = false)
      : label_(std::move(label)), unit_(std::move(unit)), total_(total), quiet_(quiet),
        interactive_(force || ::isatty(2)), start_(clock::now()), last_draw_(start_) {}

  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;
  ~ProgressBar() { finish(); }

  // Marks `n` more units done; `status` is shown after the counters (e.g. the losses).
  void advance(long long n = 1, const std::string& status = {}) { set(done_ + n, status); }

  void set(long long done, const std::string& status = {}) {
    done_ = done;
    if (!status.empty()) status_ = status;
    const auto now = clock::now();
    if (quiet_ || !interactive_ || finished_) return;
    if (now - last_draw_ < std::chrono::milliseconds(100) && done_ < total_) return;
    last_draw_ = now;
    draw('\r');
  }

  // A loop that re-plans its length (a time budget) changes the total as it goes.
  void set_total(long long total) { total_ = total; }

  // Prints the final line (also when stderr is not a terminal) once.
  void finish() {
    if (finished_) return;
    finished_ = true;
    if (!quiet_) draw(interactive_ ? '\r' : '\0'), std::fputc('\n', stderr);
  }

  double elapsed_seconds() const {
    return std::chrono::duration<double>(clock::now() - start_).count();
  }
  double rate() const {
    const double s = elapsed_seconds();
    return s > 0 ? static_cast<double>(done_) / s : 0.0;
  }
  long long done() const { return done_; }

 private:
  static std::string clock_text(double seconds) {
    if (!(seconds >= 0) || seconds > 359999) return "--:--";
    const long s = static_cast<long>(seconds + 0.5);
    char buf[32];
    if (s >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else std::snprintf(buf, sizeof buf, "%02ld:%02ld", s / 60, s % 60);
    return buf;
  }

  void draw(char lead) {
    const double elapsed = elapsed_seconds();
    const double r = rate();
    const double fraction = total_ > 0 ? static_cast<double>(done_) / static_cast<double>(total_) : 0.0;
    constexpr int width = 24;
    const int filled = static_cast<int>(fraction * width + 1e-9);
    std::string bar(static_cast<size_t>(width), ' ');
    for (int i = 0; i < filled && i < width; ++i) bar[static_cast<size_t>(i)] = '#';
    const double eta = r > 0 && total_ > 0 ? static_cast<double>(total_ - done_) / r : -1.0;
    if (lead) std::fputc(lead, stderr);
    std::fprintf(stderr, "%s [%s] %lld/%lld %.1f %s/s %s<%s %s%s", label_.c_str(), bar.c_str(),
                 done_, total_, r, unit_.c_str(), clock_text(elapsed).c_str(), clock_text(eta).c_str(),
                 status_.c_str(), interactive_ ? "\x1b[K" : "");
    std::fflush(stderr);
  }

  std::string label_, unit_, status_;
  long long total_ = 0, done_ = 0;
  bool quiet_ = false, interactive_ = false, finished_ = false;
  clock::time_point start_, last_draw_;
};

}  // namespace blip
