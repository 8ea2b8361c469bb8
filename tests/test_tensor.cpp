// Tensor layout, views, devices, element types, RNG and bad-input errors.
#include <catch2/catch.hpp>

#include "blip/backend/cuda/runtime.hpp"
#include "blip/blip.hpp"

using namespace blip;
using Catch::Matchers::Contains;

TEST_CASE("views share memory and contiguous() copies only when needed", "[tensor]") {
  auto x = Tensor<float>::from_vector({2, 3}, {0, 1, 2, 3, 4, 5});
  auto t = transpose(x, 0, 1);
  REQUIRE(t.shape() == Shape{3, 2});
  REQUIRE(t.shares_storage_with(x));
  REQUIRE_FALSE(t.is_contiguous());
  REQUIRE(t.to_vector() == std::vector<float>{0, 3, 1, 4, 2, 5});
  auto c = contiguous(t);
  REQUIRE(c.is_contiguous());
  REQUIRE_FALSE(c.shares_storage_with(x));
  REQUIRE(contiguous(x).shares_storage_with(x));
  auto s = slice(x, 1, 1, 3);
  REQUIRE(s.to_vector() == std::vector<float>{1, 2, 4, 5});
  x.data()[1] = 10;  // writes through to the view
  REQUIRE(s.to_vector()[0] == 10);
  auto e = expand(Tensor<float>::from_vector({3}, {1, 2, 3}), {2, 3});
  REQUIRE(e.strides() == Strides{0, 1});
  REQUIRE(e.to_vector() == std::vector<float>{1, 2, 3, 1, 2, 3});
  auto r = reshape(t, {6});  // non-contiguous input: reshape copies
  REQUIRE(r.to_vector() == std::vector<float>{0, 3, 10, 4, 2, 5});
  REQUIRE(select(x, 0, 1).to_vector() == std::vector<float>{3, 4, 5});
  REQUIRE(unsqueeze(x, 0).shape() == Shape{1, 2, 3});
  REQUIRE(squeeze(unsqueeze(x, 2), 2).shape() == Shape{2, 3});
  const auto p = permute(reshape(arange<float>(24), {2, 3, 4}), {2, 0, 1});  // p[i,j,k] = x[j,k,i]
  REQUIRE(p.shape() == Shape{4, 2, 3});
  REQUIRE(p.to_vector()[1] == 4);
  REQUIRE(p.to_vector()[3] == 12);
}

TEST_CASE("bad shapes, axes and indices throw errors that name them", "[tensor][errors]") {
  auto a = zeros<float>({2, 3});
  auto b = zeros<float>({4, 5});
  REQUIRE_THROWS_WITH(add(a, b), Contains("add") && Contains("[2, 3]") && Contains("[4, 5]"));
  REQUIRE_THROWS_WITH(matmul(a, b), Contains("matmul") && Contains("[2, 3]"));
  REQUIRE_THROWS_WITH(transpose(a, 0, 2), Contains("axis 2"));
  REQUIRE_THROWS_WITH(reshape(a, {4, 2}), Contains("reshape"));
  REQUIRE_THROWS_WITH(narrow(a, 1, 2, 2), Contains("narrow"));
  auto ids = Tensor<int64_t>::from_vector({2}, {1, 7});
  REQUIRE_THROWS_WITH(embedding(ids, zeros<float>({5, 2})), Contains("index 7") && Contains("position 1"));
  REQUIRE_THROWS_WITH(index_select(a, 0, ids), Contains("index_select"));
  REQUIRE_THROWS_WITH(cross_entropy(a, Tensor<int64_t>::from_vector({2}, {0, 3})), Contains("label 3"));
  REQUIRE_THROWS_WITH(topk(a, 4), Contains("topk"));
  REQUIRE_THROWS_WITH(layer_norm(a, zeros<float>({2}), zeros<float>({3}), 1e-5), Contains("layer_norm"));
  REQUIRE_THROWS_WITH(conv2d(zeros<float>({1, 3, 5, 4}), zeros<float>({2, 3, 2, 2}), Tensor<float>(), {2, 2}),
                      Contains("multiple"));
  REQUIRE_THROWS_WITH(a.item(), Contains("6 elements"));
  REQUIRE_THROWS_WITH(Tensor<float>::from_vector({2}, {1, 2, 3}), Contains("[2]"));
  REQUIRE_THROWS_WITH(dropout(a, 1.5, *std::make_unique<Generator>(1)), Contains("dropout"));
}

TEST_CASE("bf16 and fp16 round to nearest even", "[tensor][dtype]") {
  REQUIRE(static_cast<float>(bf16(1.0f)) == 1.0f);
  REQUIRE(bf16(1.0f + 0x1.0p-8f).bits == bf16(1.0f).bits);               // tie -> even
  REQUIRE(bf16(1.0f + 0x1.8p-8f).bits == bf16(1.0f).bits + 1);           // above half -> up
  REQUIRE(static_cast<float>(fp16(0.333251953125f)) == 0.333251953125f);  // exact in half
  REQUIRE(fp16(65504.0f).bits == 0x7bff);
  REQUIRE(fp16(1e6f).bits == 0x7c00);
  REQUIRE(static_cast<float>(fp16(5.9604644775390625e-8f)) == 5.9604644775390625e-8f);  // smallest subnormal
  REQUIRE(fp16(1.0f + 0x1.0p-11f).bits == fp16(1.0f).bits);  // tie -> even
  REQUIRE(std::isnan(static_cast<float>(fp16(std::nanf("")))));
  auto halves = cast<fp16>(Tensor<float>::from_vector({3}, {1.5f, -2.0f, 0.1f}));
  auto back = cast<float>(halves).to_vector();
  REQUIRE(back[0] == 1.5f);
  REQUIRE(back[2] == Approx(0.1f).epsilon(1e-3));
}

TEST_CASE("generators are deterministic and independent", "[tensor][rng]") {
  Generator a(42), b(42), c(43);
  auto x = randn<float>({100}, a).to_vector();
  REQUIRE(x == randn<float>({100}, b).to_vector());
  REQUIRE(x != randn<float>({100}, c).to_vector());
  const auto saved = a.state();
  const double next = a.uniform();
  a.set_state(saved);
  REQUIRE(a.uniform() == next);
  double mean = 0, var = 0;
  Generator g(5);
  for (int i = 0; i < 20000; ++i) {
    const double v = g.normal();
    mean += v / 20000;
    var += v * v / 20000;
  }
  REQUIRE(std::abs(mean) < 0.03);
  REQUIRE(std::abs(var - 1) < 0.05);
  for (int i = 0; i < 1000; ++i) {
    const double t = g.truncated_normal(0, 1, -0.5, 0.5);
    REQUIRE((t >= -0.5 && t <= 0.5));
  }
}

TEST_CASE("the Cuda device fails clearly in a build without CUDA", "[tensor][cuda]") {
#ifndef BLIP_WITH_CUDA
  REQUIRE_THROWS_WITH((Tensor<float, Cuda>::zeros({2})), Contains("without CUDA"));
#else
  if (blip::cuda::device_count() == 0) REQUIRE_THROWS_AS((Tensor<float, Cuda>::zeros({2})), blip::Error);
  else REQUIRE((Tensor<float, Cuda>::zeros({2}).to_vector()) == std::vector<float>{0.0f, 0.0f});
#endif
}

TEST_CASE("large CPU buffers are reused from the cache, the live high-water mark unchanged", "[tensor][memory]") {
  using Memory = DeviceMemory<Cpu>;
  if (Memory::direct_map == SIZE_MAX) return;  // sanitizer builds route everything through malloc
  Memory::empty_cache();
  Memory::reset_peak();
  const size_t big = size_t{8} << 20;
  void* a = Memory::allocate(big);
  std::memset(a, 1, big);
  Memory::release(a, big);
  void* b = Memory::allocate(big);  // the same size comes back from the cache, already faulted in
  CHECK(b == a);
  Memory::release(b, big);
  // Caching beyond cache_limit is allowed only up to the live peak reached so far.
  const size_t n = Memory::cache_limit / big + 4;
  std::vector<void*> blocks;
  for (size_t i = 0; i < n; ++i) blocks.push_back(Memory::allocate(big));
  const size_t peak = Memory::stats().peak_bytes;
  CHECK(peak >= n * big);
  std::vector<void*> first = blocks;
  for (void* p : blocks) Memory::release(p, big);
  for (size_t i = 0; i < n; ++i) blocks[i] = Memory::allocate(big);
  std::sort(first.begin(), first.end());
  std::sort(blocks.begin(), blocks.end());
  CHECK(blocks == first);  // all n blocks (more than cache_limit) came back from the cache
  CHECK(Memory::stats().peak_bytes == peak);
  for (void* p : blocks) Memory::release(p, big);
  Memory::reset_peak();  // gives the cache back down to cache_limit
  void* c = Memory::allocate(2 * big);  // a size not cached: evicts rather than grows
  Memory::release(c, 2 * big);
  Memory::empty_cache();
}

// A layer's outputs cycle through the cache while most of the peak (the weights) stays live: the
// cache may then hold cache_slack beyond the high-water mark, and never more.
TEST_CASE("large CPU buffers cycle through the cache up to cache_slack beyond the peak", "[tensor][memory]") {
  using Memory = DeviceMemory<Cpu>;
  if (Memory::direct_map == SIZE_MAX) return;  // sanitizer builds route everything through malloc
  Memory::empty_cache();
  Memory::reset_peak();
  void* weights = Memory::allocate(Memory::cache_limit + (size_t{16} << 20));  // the peak rule binds
  const size_t peak = Memory::stats().peak_bytes;
  // Distinct sizes, one live at a time: each is a fresh mapping the first time round.
  std::vector<size_t> sizes;
  for (size_t i = 0; i < 12; ++i) sizes.push_back((size_t{8} << 20) + i * 4096);  // ~96 MiB < cache_slack
  std::vector<void*> first;
  for (size_t bytes : sizes) {
    void* p = Memory::allocate(bytes);
    std::memset(p, 1, bytes);
    first.push_back(p);
    Memory::release(p, bytes);
    const MemoryStats s = Memory::stats();
    CHECK(s.peak_bytes <= peak + (size_t{9} << 20));  // one output live at a time
    CHECK(s.bytes_in_use + s.cached_bytes <= s.peak_bytes + Memory::cache_slack);
  }
  CHECK(Memory::stats().cached_bytes > Memory::stats().peak_bytes - Memory::stats().bytes_in_use);
  for (size_t i = 0; i < sizes.size(); ++i) {  // the second round takes each back, already faulted in
    void* p = Memory::allocate(sizes[i]);
    CHECK(p == first[i]);
    Memory::release(p, sizes[i]);
  }
  // Past the slack the oldest mappings go: the bound holds for any number of sizes.
  for (size_t i = 0; i < 24; ++i) {
    const size_t bytes = (size_t{8} << 20) + (100 + i) * 4096;
    Memory::release(Memory::allocate(bytes), bytes);
    const MemoryStats s = Memory::stats();
    CHECK(s.bytes_in_use + s.cached_bytes <= s.peak_bytes + Memory::cache_slack);
  }
  Memory::release(weights, Memory::cache_limit + (size_t{16} << 20));
  Memory::empty_cache();
  Memory::reset_peak();
}

TEST_CASE("byte shares cover every byte of every item once, in order", "[tensor][parallel]") {
  const int saved = cpu::num_threads();
  const std::vector<uint64_t> sizes = {0, 5u << 20, 1, 0, 9u << 20, 3u << 20, 7, 0};
  uint64_t total = 0;
  for (uint64_t s : sizes) total += s;
  for (int threads : {1, 2, 3}) {
    INFO(threads << " threads");
    cpu::set_num_threads(threads);
    REQUIRE(cpu::byte_share_count(total) == threads);
    REQUIRE(cpu::byte_share_count(1u << 20) == 1);  // small passes stay on the calling thread
    struct Piece {
      int share;
      size_t item;
      uint64_t offset, length;
    };
    std::vector<std::vector<Piece>> got(static_cast<size_t>(threads));
    cpu::for_byte_shares(sizes.data(), sizes.size(), cpu::byte_share_count(total), [&](int share, size_t item, uint64_t offset, uint64_t length) {
      got[static_cast<size_t>(share)].push_back({share, item, offset, length});
    });
    // Concatenated in share order, the pieces walk the items end to end without gap or overlap.
    size_t item = 0;
    uint64_t offset = 0;
    for (const auto& share : got) {
      REQUIRE_FALSE(share.empty());
      for (const Piece& p : share) {
        while (item < sizes.size() && offset == sizes[item]) ++item, offset = 0;
        REQUIRE(p.item == item);
        REQUIRE(p.offset == offset);
        REQUIRE(p.length > 0);
        offset += p.length;
      }
    }
    while (item < sizes.size() && offset == sizes[item]) ++item, offset = 0;
    REQUIRE(item == sizes.size());
  }
  cpu::set_num_threads(saved);
}

TEST_CASE("parallel_for rethrows an exception thrown in a chunk, after every chunk ended", "[tensor][parallel]") {
  const int saved = cpu::num_threads();
  for (int threads : {1, 2, 3}) {
    INFO(threads << " threads");
    cpu::set_num_threads(threads);
    std::vector<int> done(static_cast<size_t>(threads), 0);
    const auto run = [&] {
      cpu::parallel_for(threads, int64_t{1} << 20, [&](int64_t begin, int64_t end) {
        for (int64_t c = begin; c < end; ++c) {
          done[static_cast<size_t>(c)] = 1;
          if (c == threads - 1) fail("chunk ", c, " refused");
        }
      });
    };
    CHECK_THROWS_WITH(run(), Catch::Contains("chunk " + std::to_string(threads - 1) + " refused"));
    for (int d : done) CHECK(d == 1);  // the other chunks ran to their end
  }
  cpu::set_num_threads(saved);
}

TEST_CASE("copy_into_streaming copies a batch exactly, strided destinations too", "[tensor][copy]") {
  const int saved = cpu::num_threads();
  Generator gen(5);
  std::vector<std::pair<Tensor<float, Cpu>, Tensor<float, Cpu>>> pairs;
  std::vector<Tensor<float, Cpu>> dst_owners;
  for (int64_t rows : {1, 1024, 3, 2048, 777, 0, 4096}) {  // ~30 MiB: more than one share
    const Tensor<float, Cpu> src = randn<float, Cpu>({rows, 1031}, gen);
    dst_owners.push_back(Tensor<float, Cpu>::zeros({rows, 1031}));
    pairs.emplace_back(dst_owners.back(), src);
  }
  // A transposed destination takes copy_into's strided path inside the same batch.
  const Tensor<float, Cpu> square = randn<float, Cpu>({64, 64}, gen);
  const Tensor<float, Cpu> target = Tensor<float, Cpu>::zeros({64, 64});
  pairs.emplace_back(transpose(target, 0, 1), square);
  for (int threads : {1, 2}) {
    cpu::set_num_threads(threads);
    for (auto& d : dst_owners) fill_(d, -1.0f);
    fill_(target, -1.0f);
    copy_into_streaming(std::span<const std::pair<Tensor<float, Cpu>, Tensor<float, Cpu>>>(pairs));
    for (const auto& [dst, src] : pairs) REQUIRE(contiguous(dst).to_vector() == src.to_vector());
  }
  REQUIRE(contiguous(transpose(target, 0, 1)).to_vector() == square.to_vector());
  cpu::set_num_threads(saved);
}
