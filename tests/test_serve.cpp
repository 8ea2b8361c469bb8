// `blip serve` end to end on loopback (issue 15): the JSON against `blip search`, a bounded load
// test, bad requests answered 4xx while the server keeps serving, thumbnails confined to the
// index, image uploads, Prometheus metrics, SIGTERM; and (tag [browser]) headless Chromium
// driven by keyboard over the DevTools protocol: type a query, Enter, Tab through the page,
// toggle the re-rank, and a screenshot whose grid is checked.
//
// The test starts and stops everything itself: make_retrieval_fixture writes a tiny model and
// images, `blip index` an index, `blip serve --port 0` picks a free port and prints it.
// Environment: BLIP_EXE, BLIP_FIXTURE, BLIP_WORK (a scratch folder), BLIP_CHROMIUM (browser test).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <zlib.h>

#include "blip/vision/decode.hpp"
#include "blip/vision/encode.hpp"

// Last: httplib.h brings <resolv.h>, whose macros break headers included after it.
#include <httplib.h>

extern char** environ;

namespace {

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

std::string env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) FAIL("environment variable " << name << " is not set (run through ctest)");
  return v;
}

struct Child {
  pid_t pid = -1;
  int out = -1;  // the read end of its stdout + stderr
};

Child spawn(const std::vector<std::string>& args) {
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 2);
  posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  Child c;
  const int rc = posix_spawn(&c.pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipe_fds[1]);
  REQUIRE(rc == 0);
  c.out = pipe_fds[0];
  return c;
}

// Everything the child writes until it exits, and its exit status.
std::pair<int, std::string> finish(Child& c) {
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = ::read(c.out, buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(c.out);
  int status = 0;
  ::waitpid(c.pid, &status, 0);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), text};
}

// finish(), but the child is killed (and so fails the caller's status check) after `seconds`.
std::pair<int, std::string> finish_within(Child& c, int seconds) {
  std::atomic<bool> done{false};
  std::thread watchdog([&] {
    for (int i = 0; i < 10 * seconds && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (!done) ::kill(c.pid, SIGKILL);
  });
  auto r = finish(c);
  done = true;
  watchdog.join();
  return r;
}

std::string run_ok(const std::vector<std::string>& args) {
  Child c = spawn(args);
  auto [rc, text] = finish(c);
  INFO(text);
  REQUIRE(rc == 0);
  return text;
}

// A running `blip serve`: started with --port 0, its port read from its first line.
struct Server {
  Child child;
  int port = 0;
  std::string log;

  explicit Server(std::vector<std::string> args) {
    args.insert(args.end(), {"--port", "0"});
    child = spawn(args);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    const std::regex listening("listening on http://127\\.0\\.0\\.1:([0-9]+)/");
    std::smatch m;
    while (!std::regex_search(log, m, listening)) {
      REQUIRE(std::chrono::steady_clock::now() < deadline);
      pollfd p{child.out, POLLIN, 0};
      if (::poll(&p, 1, 1000) != 1) continue;  // bounded: the deadline is checked every second
      char buf[512];
      const ssize_t n = ::read(child.out, buf, sizeof buf);
      if (n == 0) FAIL("blip serve exited before listening: " << log);
      if (n > 0) log.append(buf, static_cast<size_t>(n));
    }
    port = std::stoi(m[1]);
  }
  // SIGTERM, then its exit status and output (within 30 s, or it is killed and the test fails).
  std::pair<int, std::string> stop() {
    ::kill(child.pid, SIGTERM);
    auto r = finish_within(child, 30);
    r.second = log + r.second;
    child.pid = -1;
    return r;
  }
  ~Server() {
    if (child.pid > 0) {
      ::kill(child.pid, SIGKILL);
      finish(child);
    }
  }
};

struct Gallery {
  std::string exe, work, index;
  std::vector<std::string> model;
};

const Gallery& gallery() {
  static const Gallery g = [] {
    Gallery g;
    g.exe = env("BLIP_EXE");
    g.work = env("BLIP_WORK");
    fs::remove_all(g.work);
    fs::create_directories(g.work);
    run_ok({env("BLIP_FIXTURE"), g.work});
    g.model = {"--preset", "tiny", "--checkpoint", g.work + "/tiny.safetensors", "--vocab", g.work + "/vocab.txt"};
    g.index = g.work + "/g.idx";
    std::vector<std::string> args{g.exe, "-q", "index"};
    args.insert(args.end(), g.model.begin(), g.model.end());
    args.insert(args.end(), {"--images", g.work + "/images", "--out", g.index, "--embeds", "bf16"});
    run_ok(args);
    return g;
  }();
  return g;
}

std::vector<std::string> serve_args(const Gallery& g) {
  std::vector<std::string> args{g.exe, "serve", "--index", g.index};
  args.insert(args.end(), g.model.begin(), g.model.end());
  return args;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_CASE("blip serve: JSON as blip search, load, bad requests, thumbnails, uploads, metrics, SIGTERM", "[serve]") {
  const Gallery& g = gallery();
  Server server(serve_args(g));
  httplib::Client http("127.0.0.1", server.port);
  http.set_read_timeout(60, 0);

  // The same queries through `blip search --json`: the same paths in the same order, the same scores.
  const std::vector<std::string> queries{"a dog on the beach", "blue sky"};
  std::vector<std::string> search{g.exe, "search", "--index", g.index};
  search.insert(search.end(), g.model.begin(), g.model.end());
  search.insert(search.end(), queries.begin(), queries.end());
  search.insert(search.end(), {"-n", "3", "--rerank", "4", "--json"});
  Child searcher = spawn(search);
  auto [search_rc, search_out] = finish(searcher);
  REQUIRE(search_rc == 0);
  const auto cli = nlohmann::json::parse(search_out.substr(search_out.find('[')));
  for (size_t i = 0; i < queries.size(); ++i) {
    const auto res = http.Get(("/api/search?q=" + httplib::detail::encode_query_param(queries[i]) + "&n=3&rerank=4").c_str());
    REQUIRE(res);
    INFO(res->body);
    REQUIRE(res->status == 200);
    const auto j = nlohmann::json::parse(res->body);
    CHECK(j["query"] == queries[i]);
    REQUIRE(j["results"].size() == 3);
    for (size_t r = 0; r < 3; ++r) {
      const auto& want = cli[i]["results"][r];
      const auto& got = j["results"][r];
      CHECK(got["path"] == want["path"]);
      CHECK(got["score"].get<double>() == Approx(want["score"].get<double>()).margin(1e-4));
      CHECK(got["reranked"] == true);
      CHECK(got["itm"].get<double>() == Approx(got["score"].get<double>() - got["similarity"].get<double>()).margin(1e-5));
      CHECK(fs::path(got["path"].get<std::string>()).filename() == fs::path(got["entry"].get<std::string>()).filename());
    }
  }

  // Load: 8 clients x 12 requests each, all answered 200; latency percentiles reported.
  const int clients = 8, each = 12;
  std::vector<double> latency_ms(static_cast<size_t>(clients * each));
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  const std::vector<std::string> words{"dog", "beach", "red car", "snow", "green shirt", "sky", "two men", "a cat"};
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&, c] {
      httplib::Client client("127.0.0.1", server.port);
      client.set_read_timeout(60, 0);
      for (int r = 0; r < each; ++r) {
        const std::string q = words[static_cast<size_t>((c + r) % words.size())] + " " + std::to_string(r);
        const auto t0 = std::chrono::steady_clock::now();
        const auto res = client.Get(("/api/search?n=5&rerank=" + std::to_string(r % 3 == 0 ? 2 : 0) +
                                     "&q=" + httplib::detail::encode_query_param(q)).c_str());
        latency_ms[static_cast<size_t>(c * each + r)] =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (!res || res->status != 200 || nlohmann::json::parse(res->body)["results"].size() != 5) ++errors;
      }
    });
  for (auto& t : threads) t.join();
  CHECK(errors == 0);
  std::sort(latency_ms.begin(), latency_ms.end());
  const double p50 = latency_ms[latency_ms.size() / 2], p99 = latency_ms[latency_ms.size() * 99 / 100];
  WARN("load: " << clients << " clients x " << each << " requests, p50 " << p50 << " ms, p99 " << p99 << " ms, "
                << errors << " errors");

  // Bad requests: clear 4xx answers, JSON with an error message.
  auto expect_status = [&](const httplib::Result& res, int status, const std::string& says) {
    REQUIRE(res);
    INFO(res->body);
    CHECK(res->status == status);
    if (!says.empty()) CHECK_THAT(res->body, Contains(says));
  };
  expect_status(http.Get(("/api/search?q=" + std::string(1 << 20, 'a')).c_str()), 414, "too long");
  expect_status(http.Get(("/api/search?q=" + std::string(4000, 'a')).c_str()), 413, "at most 2048");
  expect_status(http.Get("/api/search"), 400, "parameter q");
  expect_status(http.Get("/api/search?q=dog&n=abc"), 400, "parameter n must be an integer");
  expect_status(http.Get("/api/search?q=dog&n=100000"), 400, "parameter n");
  expect_status(http.Get("/api/search?q=dog&rerank=-1"), 400, "parameter rerank");
  expect_status(http.Post("/api/search", "not an image at all", "application/octet-stream"), 400, "not PNG, JPEG");
  expect_status(http.Post("/api/search", "", "image/png"), 400, "holds no image");
  expect_status(http.Post("/api/search", "--x\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\ntrunc",
                          "multipart/form-data; boundary=x"),
                400, "");
  {  // an image bomb: a PNG whose header claims 40000 x 40000 pixels, in a few hundred bytes
    blip::vision::Image small(8, 8, 3);
    std::vector<uint8_t> png = blip::vision::encode_png(small);
    const uint32_t big = __builtin_bswap32(40000);
    std::memcpy(png.data() + 16, &big, 4);
    std::memcpy(png.data() + 20, &big, 4);
    const uint32_t crc = __builtin_bswap32(static_cast<uint32_t>(crc32(0, png.data() + 12, 17)));
    std::memcpy(png.data() + 29, &crc, 4);
    expect_status(http.Post("/api/search", std::string(png.begin(), png.end()), "image/png"), 413, "pixel");
  }
  expect_status(http.Get("/thumb?path=../../etc/passwd"), 403, "outside its root");
  expect_status(http.Get("/thumb?path=/etc/passwd"), 403, "outside its root");
  expect_status(http.Get("/thumb?path=img9.png"), 404, "not an image of this index");
  expect_status(http.Get("/nope"), 404, "no such page");

  // Still serving. A thumbnail of an entry decodes; an indexed image uploaded finds itself.
  expect_status(http.Get("/healthz"), 200, "\"status\":\"ok\"");
  const auto first = nlohmann::json::parse(http.Get("/api/search?q=dog&n=6")->body)["results"][0];
  const auto thumb = http.Get(("/thumb?path=" + httplib::detail::encode_query_param(first["entry"].get<std::string>())).c_str());
  REQUIRE(thumb);
  REQUIRE(thumb->status == 200);
  CHECK(thumb->get_header_value("Content-Type") == "image/png");
  const auto img = blip::vision::decode_image(reinterpret_cast<const uint8_t*>(thumb->body.data()), thumb->body.size(), "thumb");
  CHECK(std::max(img.width, img.height) <= 256);
  const std::string bytes = read_text(first["path"].get<std::string>());
  const auto by_image = http.Post("/api/search?n=2", bytes, "image/png");
  REQUIRE(by_image);
  INFO(by_image->body);
  REQUIRE(by_image->status == 200);
  const auto hit = nlohmann::json::parse(by_image->body)["results"][0];
  CHECK(hit["path"] == first["path"]);
  CHECK(hit["similarity"].get<double>() == Approx(1).margin(1e-4));
  httplib::MultipartFormDataItems form{{"image", bytes, "x.png", "image/png"}};
  const auto multipart = http.Post("/api/search?n=1", form);
  REQUIRE(multipart);
  REQUIRE(multipart->status == 200);
  CHECK(nlohmann::json::parse(multipart->body)["results"][0]["path"] == first["path"]);
  expect_status(http.Post("/api/search?rerank=2", bytes, "image/png"), 400, "rerank");

  // Metrics: the requests above, counted, and the text batches.
  const auto metrics = http.Get("/metrics");
  REQUIRE(metrics);
  const std::regex ok_count("blip_requests_total\\{endpoint=\"/api/search\",method=\"GET\",code=\"200\"\\} ([0-9]+)");
  std::smatch m;
  REQUIRE(std::regex_search(metrics->body, m, ok_count));
  CHECK(std::stoi(m[1]) >= clients * each + 3);
  CHECK_THAT(metrics->body, Contains("# TYPE blip_request_duration_seconds histogram"));
  CHECK_THAT(metrics->body, Contains("blip_request_duration_seconds_bucket{endpoint=\"/api/search\",le=\"+Inf\"}"));
  CHECK_THAT(metrics->body, Contains("blip_text_batch_size_count"));
  CHECK_THAT(metrics->body, Contains("blip_requests_total{endpoint=\"/thumb\",method=\"GET\",code=\"403\"} 2"));
  CHECK_THAT(metrics->body, Contains("blip_index_entries 6"));

  // SIGTERM: the server stops listening and exits 0.
  const auto [rc, log] = server.stop();
  INFO(log);
  CHECK(rc == 0);
  CHECK_THAT(log, Contains("SIGTERM, stopping") && Contains("blip serve: stopped"));
}

TEST_CASE("blip serve: one query's failure stays its own; a signal during start-up still stops it", "[serve]") {
  const Gallery& g = gallery();
  // An index without embeds: its re-rank reads the image files. Copy the gallery, index it, then
  // remove one image, so a re-rank that reaches it fails on the server.
  const std::string dir = g.work + "/partial";
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const char* f : {"img0.png", "img1.png", "img2.png"}) fs::copy_file(g.work + "/images/" + f, dir + "/" + f);
  std::vector<std::string> args{g.exe, "-q", "index"};
  args.insert(args.end(), g.model.begin(), g.model.end());
  args.insert(args.end(), {"--images", dir, "--out", dir + ".idx"});
  run_ok(args);
  fs::remove(dir + "/img1.png");
  std::vector<std::string> serve{g.exe, "serve", "--index", dir + ".idx", "--max-queue", "4", "--http-threads", "8"};
  serve.insert(serve.end(), g.model.begin(), g.model.end());
  Server server(serve);
  std::vector<std::thread> clients;
  std::vector<int> status(8, 0);
  for (int c = 0; c < 8; ++c)
    clients.emplace_back([&, c] {
      httplib::Client client("127.0.0.1", server.port);
      client.set_read_timeout(60, 0);
      // Even clients re-rank all three images (one is gone); odd ones do not re-rank.
      const auto res = client.Get(("/api/search?q=query" + std::to_string(c) + "&n=3&rerank=" + (c % 2 ? "0" : "3")).c_str());
      status[static_cast<size_t>(c)] = res ? res->status : -1;
    });
  for (auto& t : clients) t.join();
  for (int c = 0; c < 8; ++c) {
    INFO("client " << c);
    // A re-rank whose image is missing is the server's failure (500) and no one else's; a 503
    // (the queue of 4 full) is allowed, and never an error for the plain queries.
    if (c % 2) CHECK((status[static_cast<size_t>(c)] == 200 || status[static_cast<size_t>(c)] == 503));
    else CHECK((status[static_cast<size_t>(c)] == 500 || status[static_cast<size_t>(c)] == 503));
  }
  CHECK(std::count(status.begin(), status.end(), 200) >= 1);
  httplib::Client http("127.0.0.1", server.port);
  const auto failed = http.Get("/api/search?q=dog&n=3&rerank=3");
  REQUIRE(failed);
  CHECK(failed->status == 500);
  CHECK_THAT(failed->body, Contains("img1.png"));
  CHECK(http.Get("/api/search?q=dog&n=3")->status == 200);
  server.stop();

  // An index with an IVF index beside it: /healthz names it, and on a gallery this small (one
  // list) its hits are the exact ones.
#ifdef BLIP_TEST_FAISS
  {
    std::vector<std::string> index_ivf{g.exe, "-q", "index"};
    index_ivf.insert(index_ivf.end(), g.model.begin(), g.model.end());
    index_ivf.insert(index_ivf.end(), {"--images", g.work + "/images", "--out", g.work + "/ivf.idx", "--kind", "ivf", "--nlist", "1"});
    run_ok(index_ivf);
    std::vector<std::string> serve_ivf{g.exe, "serve", "--index", g.work + "/ivf.idx"};
    serve_ivf.insert(serve_ivf.end(), g.model.begin(), g.model.end());
    Server ivf(serve_ivf), exact(serve_args(g));
    httplib::Client a("127.0.0.1", ivf.port), b("127.0.0.1", exact.port);
    CHECK_THAT(a.Get("/healthz")->body, Contains("\"search\":\"ivf\""));
    const auto ra = nlohmann::json::parse(a.Get("/api/search?q=a%20red%20car&n=6")->body);
    const auto rb = nlohmann::json::parse(b.Get("/api/search?q=a%20red%20car&n=6")->body);
    CHECK(ra["search"] == "ivf");
    REQUIRE(ra["results"].size() == 6);
    for (size_t r = 0; r < 6; ++r) CHECK(ra["results"][r]["path"] == rb["results"][r]["path"]);
  }
#endif

  // SIGTERM while the model is loading: the server stops as soon as it listens, exit 0.
  std::vector<std::string> early = serve_args(g);
  early.insert(early.end(), {"--port", "0"});
  Child child = spawn(early);
  // Once its main thread blocks SIGTERM (the first thing `serve` does, before loading), per
  // /proc: the signal then lands during start-up, not on the default action.
  for (int i = 0; i < 1000; ++i) {
    std::ifstream st("/proc/" + std::to_string(child.pid) + "/status");
    std::string line;
    unsigned long long blocked = 0;
    while (std::getline(st, line))
      if (line.rfind("SigBlk:", 0) == 0) blocked = std::stoull(line.substr(7), nullptr, 16);
    if (blocked >> (SIGTERM - 1) & 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ::kill(child.pid, SIGTERM);
  const auto [rc, log] = finish_within(child, 30);
  INFO(log);
  CHECK(rc == 0);
}

// Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe: the
// browser reads commands from its fd 3 and writes answers to its fd 4, each a JSON text ended by
// a NUL byte), so the test types and presses keys as a user would, without a WebSocket client.
class Browser {
 public:
  Browser(const std::string& chromium, const std::string& profile) {
    int to_browser[2], from_browser[2];
    REQUIRE(::pipe(to_browser) == 0);
    REQUIRE(::pipe(from_browser) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, to_browser[0], 3);
    posix_spawn_file_actions_adddup2(&actions, from_browser[1], 4);
    const int devnull = ::open("/dev/null", O_WRONLY);
    posix_spawn_file_actions_adddup2(&actions, devnull, 1);
    posix_spawn_file_actions_adddup2(&actions, devnull, 2);
    std::vector<std::string> args{chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                  "--hide-scrollbars", "--disable-dev-shm-usage", "--remote-debugging-pipe", "--user-data-dir=" + profile,
                                  "--window-size=1100,720", "about:blank"};
    std::vector<char*> argv;
    for (auto& x : args) argv.push_back(x.data());
    argv.push_back(nullptr);
    REQUIRE(posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ) == 0);
    posix_spawn_file_actions_destroy(&actions);
    ::close(devnull);
    ::close(to_browser[0]);
    ::close(from_browser[1]);
    out_ = to_browser[1];
    in_ = from_browser[0];
  }
  ~Browser() {
    ::close(out_);
    ::close(in_);
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }

  // Sends a command (to the page's session once attached) and returns its "result".
  nlohmann::json call(const std::string& method, nlohmann::json params = nlohmann::json::object(), bool to_page = true) {
    nlohmann::json msg{{"id", ++id_}, {"method", method}, {"params", std::move(params)}};
    if (to_page && !session_.empty()) msg["sessionId"] = session_;
    const std::string text = msg.dump() + '\0';
    REQUIRE(::write(out_, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    for (;;) {
      const nlohmann::json answer = next();
      if (answer.value("id", -1) != id_) continue;  // an event, or another answer
      INFO(method << ": " << answer.dump().substr(0, 500));
      REQUIRE(!answer.contains("error"));
      return answer["result"];
    }
  }
  // Attaches to the first page and opens `url` in it.
  void open(const std::string& url) {
    const auto targets = call("Target.getTargets", {}, false);
    std::string page;
    for (const auto& t : targets["targetInfos"])
      if (t["type"] == "page") page = t["targetId"];
    REQUIRE(!page.empty());
    session_ = call("Target.attachToTarget", {{"targetId", page}, {"flatten", true}}, false)["sessionId"];
    call("Emulation.setDeviceMetricsOverride", {{"width", 1100}, {"height", 720}, {"deviceScaleFactor", 1}, {"mobile", false}});
    call("Page.navigate", {{"url", url}});
    wait_for("document.readyState === 'complete' && document.activeElement && document.activeElement.id === 'q'");
  }
  nlohmann::json eval(const std::string& js) {
    return call("Runtime.evaluate", {{"expression", js}, {"returnByValue", true}})["result"].value("value", nlohmann::json());
  }
  void wait_for(const std::string& condition, int seconds = 60) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (eval("!!(" + condition + ")") != true) {
      INFO("waiting for " << condition);
      REQUIRE(std::chrono::steady_clock::now() < deadline);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  void type(const std::string& text) { call("Input.insertText", {{"text", text}}); }
  void key(const std::string& name, int code, const std::string& text = "") {
    nlohmann::json down{{"type", "keyDown"}, {"key", name}, {"code", name}, {"windowsVirtualKeyCode", code}};
    if (!text.empty()) down["text"] = text;
    call("Input.dispatchKeyEvent", down);
    call("Input.dispatchKeyEvent", {{"type", "keyUp"}, {"key", name}, {"code", name}, {"windowsVirtualKeyCode", code}});
  }
  std::string screenshot() {
    const std::string b64 = call("Page.captureScreenshot", {{"format", "png"}})["data"];
    std::string out;
    int bits = 0, value = 0;
    for (char c : b64) {
      const char* at = std::strchr(kBase64, c);
      if (c == '=' || !at || c == '\0') continue;
      value = value << 6 | static_cast<int>(at - kBase64);
      if ((bits += 6) >= 8) out += static_cast<char>((value >> (bits -= 8)) & 0xff);
    }
    return out;
  }

 private:
  static constexpr const char* kBase64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

  nlohmann::json next() {
    for (;;) {
      if (const size_t end = buffer_.find('\0'); end != std::string::npos) {
        const std::string text = buffer_.substr(0, end);
        buffer_.erase(0, end + 1);
        return nlohmann::json::parse(text);
      }
      pollfd p{in_, POLLIN, 0};
      REQUIRE(::poll(&p, 1, 60000) == 1);  // the browser answers within a minute, or the test fails
      char chunk[65536];
      const ssize_t n = ::read(in_, chunk, sizeof chunk);
      REQUIRE(n > 0);
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }

  pid_t pid_ = -1;
  int out_ = -1, in_ = -1, id_ = 0;
  std::string session_, buffer_;
};

TEST_CASE("blip serve: headless Chromium, keyboard only: type a query, Enter, a grid of every thumbnail", "[browser]") {
  const Gallery& g = gallery();
  Server server(serve_args(g));
  Browser browser(env("BLIP_CHROMIUM"), g.work + "/chromium-profile");
  browser.open("http://127.0.0.1:" + std::to_string(server.port) + "/");
  // The search box has focus on load; type, then Enter submits the form.
  browser.type("a dog on the beach");
  browser.key("Enter", 13, "\r");
  browser.wait_for("document.body.dataset.state === 'done'");
  CHECK(browser.eval("document.querySelectorAll('#grid li.hit').length") == 6);
  CHECK(browser.eval("[...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)") == true);
  CHECK(browser.eval("document.getElementById('status').textContent").get<std::string>().find("6 results for a dog on the beach") == 0);
  // Tab walks the controls in order, then reaches the results: all by keyboard.
  std::vector<std::string> focus;
  for (int i = 0; i < 6; ++i) {
    browser.key("Tab", 9);
    focus.push_back(browser.eval("document.activeElement.id || document.activeElement.tagName"));
  }
  CHECK(focus == std::vector<std::string>{"n", "rerank", "BUTTON", "drop", "A", "A"});
  // The re-rank toggle by Space, then Enter on the Search button: re-ranked results.
  browser.eval("document.getElementById('rerank').focus()");
  browser.key(" ", 32, " ");
  CHECK(browser.eval("document.getElementById('rerank').checked") == true);
  browser.key("Tab", 9);
  browser.key("Enter", 13, "\r");
  browser.wait_for("document.body.dataset.state === 'done' && document.getElementById('status').textContent.includes('6 results')");
  browser.wait_for("document.querySelector('#grid .score').textContent.includes('ITM')");
  // The screenshot: the window's size, not blank (the grid of thumbnails has many colours).
  const std::string png = browser.screenshot();
  const std::string shot = g.work + "/serve-page.png";
  std::ofstream(shot, std::ios::binary) << png;
  const auto img = blip::vision::decode_image(reinterpret_cast<const uint8_t*>(png.data()), png.size(), shot);
  CHECK(img.width == 1100);
  CHECK(img.height == 720);
  std::vector<int> seen(4096, 0);
  for (size_t i = 0; i + 2 < img.pixels.size(); i += 3)
    seen[static_cast<size_t>((img.pixels[i] >> 4) << 8 | (img.pixels[i + 1] >> 4) << 4 | (img.pixels[i + 2] >> 4))] = 1;
  CHECK(std::count(seen.begin(), seen.end(), 1) > 100);
  // Every thumbnail was fetched and answered 200.
  httplib::Client http("127.0.0.1", server.port);
  const auto metrics = http.Get("/metrics");
  REQUIRE(metrics);
  CHECK_THAT(metrics->body, Contains("blip_requests_total{endpoint=\"/thumb\",method=\"GET\",code=\"200\"} "));
  CHECK_THAT(metrics->body, Contains("blip_requests_total{endpoint=\"/api/search\",method=\"GET\",code=\"200\"} 2"));
  const auto [rc, log] = server.stop();
  CHECK(rc == 0);
}
