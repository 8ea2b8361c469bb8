// blip serve — the model and an index loaded once, answering searches over HTTP (cpp-httplib):
// GET /api/search?q=TEXT&n=N&rerank=K, POST /api/search (an image: raw bytes or multipart field
// "image"), GET /healthz, GET /metrics (Prometheus), GET /thumb?path=ENTRY, GET / (the page).
//
// Threads: httplib's pool parses requests, decodes uploads and makes thumbnails; one engine
// thread runs the model, so its GEMMs get every core and no two forwards compete. Text queries
// waiting together are encoded as one batch (search_by_texts), then ranked one by one. The
// queue is bounded below the thread count (a full queue answers 503 and some threads always
// stay free for /healthz and /metrics). SIGTERM or SIGINT stop the listener, the queries
// already accepted are answered, and the process exits 0; a second signal exits at once.
// Every bad request gets a 4xx with {"error": ...}; the server keeps serving. See docs/search.md.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <omp.h>
#include <pthread.h>
#include <sys/socket.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <future>
#include <list>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <variant>

#include <nlohmann/json.hpp>

#include <blip/vision/encode.hpp>
#include <blip/vision/resize.hpp>

#include "commands.hpp"
#include "gallery_files.hpp"
#include "model_setup.hpp"
#include "serve_metrics.hpp"
#include "serve_page.hpp"

// Last: httplib.h brings <resolv.h>, whose macros (res, ...) break Eigen's headers after it.
#include <httplib.h>

namespace {

namespace search = blip::search;
using Clock = std::chrono::steady_clock;

struct ServeOptions {
  blip::cli::ModelChoice model;
  std::string index, root, host = "127.0.0.1";
  int port = 8080, threads = 32;
  // Handlers wait for the engine on httplib's threads: max_queue < threads keeps the rest free
  // for /healthz, /metrics and thumbnails however busy the model is.
  int64_t max_batch = 32, max_queue = 24, max_n = 1000, max_rerank = 64, max_query_bytes = 2048;
  int64_t max_upload_bytes = int64_t{32} << 20, max_upload_pixels = int64_t{1} << 26;
  int thumb_size = 256;
  blip::cli::AnnQueryChoice ann;
};

// A request's failure: the HTTP status and the message for {"error": ...}.
struct HttpError {
  int status;
  std::string message;
};

struct Job {
  bool by_text = true;
  search::TextQuery text;
  blip::Tensor<float, blip::Cpu> image;  // [1, C, H, W], preprocessed
  int64_t n = 10, rerank = 0;
  std::promise<std::variant<std::vector<search::SearchHit>, HttpError>> done;
};

// Runs every model call on one thread (on a GPU: that thread's stream); concurrent text queries
// become one batch.
template <class Model>
class Engine {
 public:
  Engine(const Model& model, const blip::text::BertTokenizer& tokenizer, const blip::cli::OpenedGallery& gallery,
         const ServeOptions& o, blip::Precision precision, blip::cli::ServeMetrics& metrics)
      : model_(model), tokenizer_(tokenizer), gallery_(gallery), o_(o), precision_(precision), metrics_(metrics),
        thread_([this] { loop(); }) {}
  ~Engine() { stop(); }

  // The job's answer, or 503 when the queue is full or the engine stopped.
  std::variant<std::vector<search::SearchHit>, HttpError> run(std::unique_ptr<Job> job) {
    auto answer = job->done.get_future();
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return HttpError{503, "the server is shutting down"};
      if (static_cast<int64_t>(queue_.size()) >= o_.max_queue)
        return HttpError{503, blip::str("busy: ", queue_.size(), " queries are waiting; try again")};
      queue_.push_back(std::move(job));
      metrics_.set_queue_depth(queue_.size());
    }
    wake_.notify_one();
    return answer.get();
  }

  void stop() {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void loop() {
    const blip::PrecisionScope precision(precision_);  // thread-local: this thread runs the model
    for (;;) {
      std::vector<std::unique_ptr<Job>> batch;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping, and every accepted query answered
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
        // The text queries waiting behind it join the batch (image queries keep their place).
        for (auto it = queue_.begin(); batch[0]->by_text && it != queue_.end() &&
                                       static_cast<int64_t>(batch.size()) < o_.max_batch;) {
          if ((*it)->by_text) {
            batch.push_back(std::move(*it));
            it = queue_.erase(it);
          } else {
            ++it;
          }
        }
        metrics_.set_queue_depth(queue_.size());
      }
      answer(batch);
    }
  }

  // A failed batch is answered query by query, so one query's failure (an image file of the
  // gallery gone missing, say) is its own and not its batch's.
  void answer(std::vector<std::unique_ptr<Job>>& batch) {
    if (try_answer(batch)) return;
    if (batch.size() == 1) {
      batch[0]->done.set_value(HttpError{500, blip::str("search failed: ", last_error_)});
      return;
    }
    for (auto& job : batch) {
      std::vector<std::unique_ptr<Job>> one;
      one.push_back(std::move(job));
      if (!try_answer(one)) one[0]->done.set_value(HttpError{500, blip::str("search failed: ", last_error_)});
    }
  }

  // Answers every job of `batch`, or none of them (false, with the reason in last_error_).
  bool try_answer(std::vector<std::unique_ptr<Job>>& batch) {
    const search::FeatureIndex& index = gallery_.index();
    try {
      if (batch[0]->by_text) {
        std::vector<search::TextQuery> queries;
        for (const auto& j : batch) queries.push_back(j->text);
        metrics_.batch(queries.size());
        auto hits = search::search_by_texts(model_, tokenizer_, index, queries, gallery_.nearest());
        for (size_t i = 0; i < batch.size(); ++i) batch[i]->done.set_value(std::move(hits[i]));
      } else {
        Job& j = *batch[0];
        j.done.set_value(search::search_by_image_tensor(model_, tokenizer_, index, j.image, j.n, j.rerank, gallery_.nearest()));
      }
      return true;
    } catch (const std::exception& e) {  // requests were checked before: this is the server's data
      last_error_ = e.what();
      return false;
    }
  }

  const Model& model_;
  const blip::text::BertTokenizer& tokenizer_;
  const blip::cli::OpenedGallery& gallery_;
  const ServeOptions& o_;
  blip::Precision precision_;
  blip::cli::ServeMetrics& metrics_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::unique_ptr<Job>> queue_;
  std::string last_error_;  // engine thread only
  bool stopping_ = false;
  std::thread thread_;  // last: starts once the rest is built
};

// PNG thumbnails of indexed images, at most `capacity` kept (least recently used dropped).
class Thumbnails {
 public:
  Thumbnails(int size, size_t capacity) : size_(size), capacity_(capacity) {}

  std::shared_ptr<const std::string> get(const std::string& path) {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      if (auto it = map_.find(path); it != map_.end()) {
        order_.splice(order_.begin(), order_, it->second.second);
        return it->second.first;
      }
    }
    const blip::vision::Image img = blip::vision::load_image(path, decode_options());
    const double scale = std::min(1.0, static_cast<double>(size_) / static_cast<double>(std::max(img.width, img.height)));
    const auto w = std::max<int64_t>(1, static_cast<int64_t>(img.width * scale + 0.5));
    const auto h = std::max<int64_t>(1, static_cast<int64_t>(img.height * scale + 0.5));
    const std::vector<uint8_t> png = blip::vision::encode_png(scale < 1 ? blip::vision::resize_bicubic(img, w, h) : img, path);
    auto bytes = std::make_shared<const std::string>(png.begin(), png.end());
    const std::lock_guard<std::mutex> lock(mutex_);
    if (map_.count(path) == 0) {
      order_.push_front(path);
      map_[path] = {bytes, order_.begin()};
      while (map_.size() > capacity_) {
        map_.erase(order_.back());
        order_.pop_back();
      }
    }
    return bytes;
  }

  static blip::vision::DecodeOptions decode_options() {
    blip::vision::DecodeOptions d;
    d.order = blip::vision::ChannelOrder::rgb;
    d.max_pixels = int64_t{1} << 26;         // 64 M pixels: a thumbnail need not hold more in memory
    d.max_file_bytes = uint64_t{32} << 20;  // what /thumb?size=full sends at most
    return d;
  }

 private:
  int size_;
  size_t capacity_;
  std::mutex mutex_;
  std::list<std::string> order_;
  std::unordered_map<std::string, std::pair<std::shared_ptr<const std::string>, std::list<std::string>::iterator>> map_;
};

void send_json(httplib::Response& res, int status, const nlohmann::ordered_json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/json");
}
void send_error(httplib::Response& res, const HttpError& e) { send_json(res, e.status, {{"error", e.message}}); }

// An integer query parameter in [lo, hi], or the default.
int64_t int_param(const httplib::Request& req, const char* name, int64_t fallback, int64_t lo, int64_t hi) {
  if (!req.has_param(name)) return fallback;
  const std::string v = req.get_param_value(name);
  int64_t x = 0;
  size_t used = 0;
  try {
    x = std::stoll(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != v.size() || x < lo || x > hi)
    throw HttpError{400, blip::str("parameter ", name, " must be an integer in [", lo, ", ", hi, "], got '",
                                   v.substr(0, 40), v.size() > 40 ? "...'" : "'")};
  return x;
}

nlohmann::ordered_json results_json(const search::FeatureIndex& index, const std::vector<search::SearchHit>& hits) {
  nlohmann::ordered_json results = nlohmann::ordered_json::array();
  const bool images = index.kind() == search::IndexKind::images;
  for (size_t r = 0; r < hits.size(); ++r) {
    const search::SearchHit& h = hits[r];
    nlohmann::ordered_json j;
    j["rank"] = r + 1;
    if (images) {
      blip::cli::put_text(j, "path", index.entry_path(h.entry));
      blip::cli::put_text(j, "entry", index.entries()[static_cast<size_t>(h.entry)]);
    } else {
      blip::cli::put_text(j, "text", index.entries()[static_cast<size_t>(h.entry)]);
    }
    j["score"] = h.score;
    j["similarity"] = h.similarity;
    j["itm"] = h.reranked ? nlohmann::ordered_json(h.score - h.similarity) : nlohmann::ordered_json(nullptr);
    j["reranked"] = h.reranked;
    results.push_back(j);
  }
  return results;
}

// SIGTERM / SIGINT arrive at this thread only (blocked everywhere else). The first stops the
// server once it listens (a signal during start-up waits for that: httplib's stop() does nothing
// before listen); a second one ends the process at once. Destroying it ends the thread.
class StopOnSignal {
 public:
  StopOnSignal(httplib::Server& server, sigset_t signals) : thread_([this, &server, signals] {
      for (int count = 0;;) {
        int sig = 0;
        sigwait(&signals, &sig);
        if (done_) return;
        if (++count > 1) {
          std::fprintf(stderr, "blip serve: second %s, exiting now\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
          std::_Exit(1);
        }
        std::fprintf(stderr, "blip serve: %s, stopping\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        requested_ = true;
        while (!server.is_running() && !done_ && !listening_over_) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        server.stop();
      }
    }) {}
  ~StopOnSignal() {
    done_ = true;
    pthread_kill(thread_.native_handle(), SIGTERM);  // wakes sigwait (the signal stays blocked: no handler runs)
    thread_.join();
  }
  bool requested() const { return requested_; }
  void listening_over() { listening_over_ = true; }

 private:
  std::atomic<bool> done_{false}, requested_{false}, listening_over_{false};
  std::thread thread_;  // last: starts once the flags exist
};

// Debian's cpp-httplib 0.11 listens with a backlog of 5 (compiled into the library): a sixth
// simultaneous connect waits for the client's SYN retransmit, 1 s (measured: the load test's
// p99 went from ~5 ms to ~1 s in one run of three). httplib does not expose its socket, so the
// listening socket on `port` is found among this process's descriptors and given the system's
// maximum; listen() on a listening socket only changes its backlog.
void raise_listen_backlog(int port) {
  for (int fd = 0; fd < 4096; ++fd) {
    sockaddr_storage a{};
    socklen_t n = sizeof a;
    int listening = 0;
    socklen_t ln = sizeof listening;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n) != 0) continue;
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ln) != 0 || !listening) continue;
    const int p = a.ss_family == AF_INET    ? ntohs(reinterpret_cast<sockaddr_in*>(&a)->sin_port)
                  : a.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&a)->sin6_port)
                                            : -1;
    if (p == port) (void)::listen(fd, SOMAXCONN);
  }
}

template <class D>
void run_serve(const ServeOptions& o, const blip::cli::CommonOptions& common) {
  // Block the stop signals before any thread starts, so that every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  BLIP_CHECK(o.max_queue < o.threads, "serve: --max-queue (", o.max_queue, ") must be smaller than --http-threads (",
             o.threads, "), so that some threads always answer /healthz, /metrics and thumbnails");
  const blip::cli::OpenedGallery gallery(o.index, o.ann, common.quiet, o.root);
  const search::FeatureIndex& index = gallery.index();
  const auto loaded = blip::cli::load_model_for<D>(o.model, index);
  search::check_index_matches(*loaded.model, index, index.kind());  // fail now, not at the first query
  const blip::vision::PipelineOptions pipeline = search::test_pipeline(*loaded.model);
  const bool images = index.kind() == search::IndexKind::images;

  blip::cli::ServeMetrics metrics;
  metrics.set_entries(index.size());
  Engine<blip::cli::CliModelOn<D>> engine(*loaded.model, *loaded.tokenizer, gallery, o, common.precision, metrics);
  Thumbnails thumbs(o.thumb_size, 2048);
  std::unordered_map<std::string, int64_t> entry_rows;
  if (images)
    for (int64_t i = 0; i < index.size(); ++i) entry_rows.emplace(index.entries()[static_cast<size_t>(i)], i);

  httplib::Server server;
  server.new_task_queue = [n = o.threads] { return new httplib::ThreadPool(static_cast<size_t>(n)); };
  server.set_payload_max_length(static_cast<size_t>(o.max_upload_bytes));
  server.set_read_timeout(10, 0);
  server.set_write_timeout(10, 0);
  server.set_keep_alive_max_count(100);
  server.set_keep_alive_timeout(2);  // an idle connection holds a thread: not for long

  // Latency from the routing of a request to its logging, on the thread that served it.
  static thread_local Clock::time_point started;
  server.set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
    started = Clock::now();
    return httplib::Server::HandlerResponse::Unhandled;
  });
  server.set_logger([&metrics](const httplib::Request& req, const httplib::Response& res) {
    static const std::set<std::string> routes{"/", "/api/search", "/healthz", "/metrics", "/thumb"};
    const std::string endpoint = routes.count(req.path) ? req.path : "other";
    const std::string method = req.method == "GET" || req.method == "POST" ? req.method : "other";
    // A request httplib refused before routing (414, a bad request line) has no start: 0 s.
    const double seconds = started == Clock::time_point{} ? 0.0 : std::chrono::duration<double>(Clock::now() - started).count();
    started = Clock::time_point{};
    metrics.request(endpoint, method, res.status, seconds);
  });
  // Errors httplib answers itself (413 payload too large, 414 URI too long, 400 bad requests).
  server.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty()) {
      const char* why = res.status == 413   ? "the request body is larger than the server accepts"
                        : res.status == 414 ? "the request line is too long"
                        : res.status == 404 ? "no such page"
                                            : "bad request";
      send_json(res, res.status, {{"error", why}});
    }
  });
  auto guarded = [](auto&& handler) {
    return [handler](const httplib::Request& req, httplib::Response& res) {
      try {
        handler(req, res);
      } catch (const HttpError& e) {
        send_error(res, e);
      } catch (const blip::Error& e) {
        send_error(res, {400, e.what()});
      } catch (const std::exception& e) {
        send_error(res, {500, blip::str("internal error: ", e.what())});
      }
    };
  };
  auto respond = [&](httplib::Response& res, const std::string& query, std::unique_ptr<Job> job) {
    const auto answer = engine.run(std::move(job));
    if (const auto* e = std::get_if<HttpError>(&answer)) throw *e;
    nlohmann::ordered_json body;
    blip::cli::put_text(body, "query", query);
    body["search"] = gallery.kind();
    body["results"] = results_json(index, std::get<std::vector<search::SearchHit>>(answer));
    send_json(res, 200, body);
  };

  server.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(blip::cli::kServePage, "text/html; charset=utf-8");
  });
  server.Get("/healthz", [&](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, {{"status", "ok"}, {"entries", index.size()}, {"kind", images ? "images" : "texts"},
                         {"search", gallery.kind()}, {"model", index.model()}});
  });
  server.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.render(), "text/plain; version=0.0.4");
  });
  server.Get("/api/search", guarded([&](const httplib::Request& req, httplib::Response& res) {
    if (!images) throw HttpError{400, "this server holds an index of texts: POST an image to /api/search"};
    const std::string q = req.get_param_value("q");
    if (q.find_first_not_of(" \t\r\n") == std::string::npos) throw HttpError{400, "parameter q (the query text) is missing or empty"};
    if (static_cast<int64_t>(q.size()) > o.max_query_bytes)
      throw HttpError{413, blip::str("the query is ", q.size(), " bytes; at most ", o.max_query_bytes, " are accepted")};
    auto job = std::make_unique<Job>();
    job->n = int_param(req, "n", 10, 1, o.max_n);
    job->rerank = int_param(req, "rerank", 0, 0, o.max_rerank);
    job->text = {q, job->n, job->rerank};
    respond(res, q, std::move(job));
  }));
  server.Post("/api/search", guarded([&](const httplib::Request& req, httplib::Response& res) {
    const std::string* bytes = &req.body;
    std::string field;
    if (req.is_multipart_form_data()) {
      if (!req.has_file("image")) throw HttpError{400, "the multipart form has no field 'image'"};
      field = req.get_file_value("image").content;
      bytes = &field;
    }
    if (bytes->empty()) throw HttpError{400, "the request holds no image (send its bytes, or a multipart field 'image')"};
    if (images && req.has_param("rerank") && req.get_param_value("rerank") != "0")
      throw HttpError{400, "the ITM re-rank scores image-text pairs: an image against an index of images ranks by "
                           "similarity only (rerank=0)"};
    auto job = std::make_unique<Job>();
    job->by_text = false;
    job->n = int_param(req, "n", 10, 1, o.max_n);
    job->rerank = int_param(req, "rerank", 0, 0, images ? 0 : o.max_rerank);
    blip::vision::PipelineOptions p = pipeline;
    p.decode.max_pixels = o.max_upload_pixels;
    p.decode.max_file_bytes = static_cast<uint64_t>(o.max_upload_bytes);
    blip::Tensor<float, blip::Cpu> image;
    try {
      omp_set_num_threads(1);  // this HTTP thread's resize: the engine's GEMMs keep the cores
      image = blip::vision::preprocess_image(reinterpret_cast<const uint8_t*>(bytes->data()), bytes->size(), "the upload", p);
    } catch (const blip::Error& e) {
      // check_size's message (vision/decode.hpp): the header claims more pixels than allowed.
      const bool too_big = std::string(e.what()).find("DecodeOptions::max_pixels") != std::string::npos;
      throw HttpError{too_big ? 413 : 400, too_big ? blip::str(e.what(), " (blip serve --max-upload-pixels ",
                                                             o.max_upload_pixels, ")")
                                                   : std::string(e.what())};
    }
    job->image = blip::reshape(image, {1, p.channels, p.size, p.size});
    respond(res, blip::str("image upload (", bytes->size(), " bytes)"), std::move(job));
  }));
  // Thumbnails of indexed images only: the path must be an entry of the index, which confines
  // it to the index's root (no "..", no absolute paths, nothing the index does not list).
  server.Get("/thumb", guarded([&](const httplib::Request& req, httplib::Response& res) {
    if (!images) throw HttpError{404, "an index of texts has no images"};
    const std::string path = req.get_param_value("path");
    const auto it = entry_rows.find(path);
    if (it == entry_rows.end()) {
      const bool escapes = path.empty() || path[0] == '/' || path.find("..") != std::string::npos;
      throw HttpError{escapes ? 403 : 404, blip::str("'", path.substr(0, 200), "' is not an image of this index",
                                                     escapes ? " (paths outside its root are refused)" : "")};
    }
    const std::string file = index.entry_path(it->second);
    omp_set_num_threads(1);  // this HTTP thread's decode and resize: the engine keeps the cores
    if (req.get_param_value("size") == "full") {
      const std::vector<uint8_t> raw = blip::vision::read_file_bytes(file, Thumbnails::decode_options());
      const std::string ext = std::filesystem::path(file).extension().string();
      res.set_content(std::string(raw.begin(), raw.end()), ext == ".png" ? "image/png" : ext == ".gif" ? "image/gif"
                                                           : ext == ".webp" ? "image/webp" : "image/jpeg");
      return;
    }
    const auto png = thumbs.get(file);
    res.set_header("Cache-Control", "max-age=3600");
    res.set_content(*png, "image/png");
  }));

  const int port = o.port == 0 ? server.bind_to_any_port(o.host) : (server.bind_to_port(o.host, o.port) ? o.port : -1);
  BLIP_CHECK(port > 0, "serve: cannot listen on ", o.host, ":", o.port, " (in use, or not an address of this machine)");
  raise_listen_backlog(port);
  StopOnSignal stopper(server, signals);
  std::fprintf(stderr, "blip serve: listening on http://%s:%d/ (%lld %s, %s search)\n", o.host.c_str(), port,
               static_cast<long long>(index.size()), images ? "images" : "texts", gallery.kind().c_str());
  std::fflush(stderr);
  const bool listened = server.listen_after_bind();
  stopper.listening_over();
  engine.stop();  // answers what was accepted
  BLIP_CHECK(listened || stopper.requested(), "serve: the server stopped accepting connections on ", o.host, ":", port,
             " (", std::strerror(errno), ")");
  std::fprintf(stderr, "blip serve: stopped\n");
}

void add_serve(CLI::App& app, const blip::cli::CommonOptions& common) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* cmd = app.add_subcommand("serve", "Serve searches of an index over HTTP, with a web page");
  cmd->add_option("--index", o->index, "Index file made by blip index")->required();
  blip::cli::add_model_options(cmd, o->model, "The model the index was built with (checkpoint file or model folder)");
  cmd->add_option("--host", o->host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", o->port, "Port to listen on (0: any free port, printed)")->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--root", o->root, "The folder the indexed images are under now (default: where they were indexed)");
  cmd->add_option("--http-threads", o->threads, "Threads parsing requests")->check(CLI::Range(1, 256))->capture_default_str();
  cmd->add_option("--max-batch", o->max_batch, "Text queries encoded together at most")->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_option("--max-queue", o->max_queue, "Queries waiting at most (more: 503); below --http-threads")->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--max-rerank", o->max_rerank, "Largest rerank a request may ask")->check(CLI::Range(0, 4096))
      ->capture_default_str();
  cmd->add_option("--max-upload-pixels", o->max_upload_pixels, "Largest uploaded image, in pixels")
      ->check(blip::cli::positive())->capture_default_str();
  blip::cli::add_ann_query_options(cmd, o->ann);
  cmd->callback([o, &common] {
    blip::cli::on_device(common, [&]<class D>() { run_serve<D>(*o, common); });
  });
}

BLIP_CLI_COMMAND(45, add_serve);

}  // namespace
