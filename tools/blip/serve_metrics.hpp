// tools/blip/serve_metrics.hpp — the counters `blip serve` exposes at GET /metrics, in
// Prometheus's text exposition format (version 0.0.4).
//
// Contract: thread-safe. request(endpoint, method, status, seconds) counts a request and adds
// its latency to the endpoint's histogram; batch(n) records the size of one text-encoder
// batch; set_queue_depth(n) is a gauge. Endpoints are the server's routes (a fixed set), so a
// client cannot grow the label space. render() writes everything with HELP and TYPE lines.
#pragma once

#include <array>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

namespace blip::cli {

class ServeMetrics {
 public:
  static constexpr std::array<double, 12> kLatencyBuckets{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                          0.1,   0.25,   0.5,   1,    2.5,   10};
  static constexpr std::array<double, 7> kBatchBuckets{1, 2, 4, 8, 16, 32, 64};

  void request(const std::string& endpoint, const std::string& method, int status, double seconds) {
    const std::lock_guard<std::mutex> lock(mutex_);
    ++requests_[{endpoint, method, status}];
    latency_[endpoint].add(seconds);
  }
  void batch(size_t n) {
    const std::lock_guard<std::mutex> lock(mutex_);
    batches_.add(static_cast<double>(n));
  }
  void set_queue_depth(size_t n) {
    const std::lock_guard<std::mutex> lock(mutex_);
    queue_depth_ = n;
  }
  void set_entries(int64_t n) { entries_ = n; }

  std::string render() const {
    const std::lock_guard<std::mutex> lock(mutex_);
    std::string out;
    out += "# HELP blip_requests_total HTTP requests answered, by endpoint, method and status code.\n";
    out += "# TYPE blip_requests_total counter\n";
    for (const auto& [key, count] : requests_) {
      const auto& [endpoint, method, status] = key;
      out += "blip_requests_total{endpoint=\"" + endpoint + "\",method=\"" + method + "\",code=\"" +
             std::to_string(status) + "\"} " + std::to_string(count) + "\n";
    }
    out += "# HELP blip_request_duration_seconds Time from the request's arrival to its answer.\n";
    out += "# TYPE blip_request_duration_seconds histogram\n";
    for (const auto& [endpoint, h] : latency_) h.render(out, "blip_request_duration_seconds", "endpoint=\"" + endpoint + "\",");
    out += "# HELP blip_text_batch_size Text queries encoded together in one batch.\n";
    out += "# TYPE blip_text_batch_size histogram\n";
    batches_.render(out, "blip_text_batch_size", "");
    out += "# HELP blip_queue_depth Queries waiting for the model.\n# TYPE blip_queue_depth gauge\n";
    out += "blip_queue_depth " + std::to_string(queue_depth_) + "\n";
    out += "# HELP blip_index_entries Entries in the served index.\n# TYPE blip_index_entries gauge\n";
    out += "blip_index_entries " + std::to_string(entries_) + "\n";
    return out;
  }

 private:
  template <size_t N>
  struct Histogram {
    const std::array<double, N>* bounds;
    std::array<unsigned long long, N> counts{};  // cumulative at render
    unsigned long long total = 0;
    double sum = 0;
    void add(double v) {
      for (size_t i = 0; i < N; ++i)
        if (v <= (*bounds)[i]) {
          ++counts[i];
          break;
        }
      ++total;
      sum += v;
    }
    void render(std::string& out, const std::string& name, const std::string& labels) const {
      unsigned long long cumulative = 0;
      char bound[32];
      for (size_t i = 0; i < N; ++i) {
        cumulative += counts[i];
        std::snprintf(bound, sizeof bound, "%g", (*bounds)[i]);
        out += name + "_bucket{" + labels + "le=\"" + bound + "\"} " + std::to_string(cumulative) + "\n";
      }
      out += name + "_bucket{" + labels + "le=\"+Inf\"} " + std::to_string(total) + "\n";
      char s[64];
      std::snprintf(s, sizeof s, "%.6f", sum);
      const std::string braces = labels.empty() ? "" : "{" + labels.substr(0, labels.size() - 1) + "}";
      out += name + "_sum" + braces + " " + s + "\n";
      out += name + "_count" + braces + " " + std::to_string(total) + "\n";
    }
  };
  struct Latency : Histogram<kLatencyBuckets.size()> {
    Latency() { bounds = &kLatencyBuckets; }
  };
  struct Batches : Histogram<kBatchBuckets.size()> {
    Batches() { bounds = &kBatchBuckets; }
  };

  mutable std::mutex mutex_;
  std::map<std::tuple<std::string, std::string, int>, unsigned long long> requests_;
  std::map<std::string, Latency> latency_;
  Batches batches_;
  size_t queue_depth_ = 0;
  int64_t entries_ = 0;
};

}  // namespace blip::cli
