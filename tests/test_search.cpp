// The index file (round trip, validation of bad files) and search (top-n, ITM re-rank, by text
// and by image) on a tiny random model.
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <numeric>

#include "blip/search/gallery.hpp"
#include "retrieval_fixtures.hpp"

using Catch::Matchers::Contains;
using namespace blip;
using namespace blip::search;

namespace {

Tensor<float, Cpu> random_rows(int64_t rows, int64_t cols, uint64_t seed, bool normalise = true) {
  Generator gen(seed);
  std::vector<float> v(static_cast<size_t>(rows * cols));
  for (auto& x : v) x = static_cast<float>(gen.normal());
  if (normalise)
    for (int64_t r = 0; r < rows; ++r) {
      double n = 0;
      for (int64_t c = 0; c < cols; ++c) n += v[static_cast<size_t>(r * cols + c)] * v[static_cast<size_t>(r * cols + c)];
      for (int64_t c = 0; c < cols; ++c) v[static_cast<size_t>(r * cols + c)] /= static_cast<float>(std::sqrt(n));
    }
  return Tensor<float, Cpu>::from_vector({rows, cols}, v);
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}
void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

}  // namespace

TEST_CASE("index file: round trip with each embeds type", "[search]") {
  fixtures::TempDir dir;
  const std::vector<std::string> entries{"a.png", "", "sub/c d.jpg", "\xc3\xa9.png", "e.png"};
  const auto feats = random_rows(5, 8, 1);
  const auto embeds = reshape(random_rows(5, 3 * 4, 2, false), {5, 3, 4});
  for (const EmbedsDtype dtype : {EmbedsDtype::none, EmbedsDtype::f32, EmbedsDtype::f16, EmbedsDtype::bf16}) {
    const std::string path = dir / "g.idx";
    std::filesystem::remove(path);
    {
      IndexWriter w(path, IndexKind::images, "tiny", 0x1234, entries, 8, dtype, 3, 4);
      const auto e0 = contiguous(narrow(embeds, 0, 0, 2));
      w.append(contiguous(narrow(feats, 0, 0, 2)), dtype == EmbedsDtype::none ? nullptr : &e0);
      CHECK_THROWS_WITH(w.finish(), Contains("2 rows appended for 5"));
    }
    CHECK(!std::filesystem::exists(path));  // an unfinished writer leaves nothing behind
    CHECK(!std::filesystem::exists(path + ".tmp"));
    {
      IndexWriter w(path, IndexKind::images, "tiny", 0x1234, entries, 8, dtype, 3, 4);
      const auto e0 = contiguous(narrow(embeds, 0, 0, 2)), e1 = contiguous(narrow(embeds, 0, 2, 3));
      w.append(contiguous(narrow(feats, 0, 0, 2)), &e0);
      w.append(contiguous(narrow(feats, 0, 2, 3)), &e1);
      w.finish();
    }
    const FeatureIndex ix = FeatureIndex::read(path);
    CHECK(ix.kind() == IndexKind::images);
    CHECK(ix.model() == "tiny");
    CHECK(ix.header().fingerprint == 0x1234);
    CHECK(ix.entries() == entries);
    CHECK(ix.feats().to_vector() == feats.to_vector());
    CHECK(ix.has_embeds() == (dtype != EmbedsDtype::none));
    const std::vector<float> all = embeds.to_vector();
    if (dtype == EmbedsDtype::none) {
      CHECK_THROWS_WITH(ix.embeds({0}), Contains("no image_embeds"));
      continue;
    }
    const std::vector<float> got = ix.embeds({4, 1}).to_vector();
    REQUIRE(got.size() == 24);
    for (size_t i = 0; i < 12; ++i) {
      for (const auto& [row, at] : {std::pair{4, i}, std::pair{1, 12 + i}}) {
        const float x = all[static_cast<size_t>(row) * 12 + i];
        const float want = dtype == EmbedsDtype::f32 ? x : dtype == EmbedsDtype::f16 ? static_cast<float>(fp16(x)) : static_cast<float>(bf16(x));
        CHECK(got[at] == want);
      }
    }
    CHECK_THROWS_WITH(ix.embeds({5}), Contains("outside [0, 5)"));
  }
}

TEST_CASE("exact search: the one-pass scan and the blocked GEMM equal the GEMM + topk path, on every ISA", "[search]") {
  const int64_t m = kScanMinRows + 1234, d = 40;  // d: not a multiple of the vector width
  Generator g(3);
  std::vector<float> x(static_cast<size_t>(m * d)), q(static_cast<size_t>(3 * d));
  for (auto& v : x) v = static_cast<float>(g.uniform_int(2000)) / 1000.0f - 1.0f;
  for (auto& v : q) v = static_cast<float>(g.uniform_int(2000)) / 1000.0f - 1.0f;
  const auto feats = Tensor<float, Cpu>::from_vector({m, d}, x);
  const auto queries = Tensor<float, Cpu>::from_vector({3, d}, q);
  const auto top = topk(matmul(queries, transpose(feats, 0, 1)), 25);
  const std::vector<float> values = top.values.to_vector();
  const std::vector<int64_t> rows = top.indices.to_vector();
  const cpu::Isa was = cpu::active_isa();
  for (cpu::Isa isa : {cpu::Isa::portable, cpu::Isa::avx2, cpu::Isa::avx512}) {
    if (static_cast<int>(isa) > static_cast<int>(cpu::detected_isa())) continue;
    cpu::set_isa(isa);
    const auto hits = top_n(feats, queries, 25);  // takes the scan: m >= kScanMinRows, 3 queries
    REQUIRE(hits.size() == 3);
    for (size_t i = 0; i < 3; ++i) {
      REQUIRE(hits[i].size() == 25);
      for (size_t j = 0; j < 25; ++j) {
        INFO("isa " << cpu::isa_name(isa) << ", query " << i << ", rank " << j);
        CHECK(hits[i][j].similarity == Approx(values[i * 25 + j]).margin(1e-4));
        // Equal similarities (the values are multiples of 1e-3) may come in either order.
        if (hits[i][j].entry != rows[i * 25 + j]) CHECK(hits[i][j].similarity == Approx(values[i * 25 + j]).margin(1e-5));
      }
    }
  }
  cpu::set_isa(was);
  // Many queries: the blocked GEMM (blocks of 16384 rows, the last one partial).
  std::vector<float> many(static_cast<size_t>(20 * d));
  for (auto& v : many) v = static_cast<float>(g.uniform_int(2000)) / 1000.0f - 1.0f;
  const auto qs = Tensor<float, Cpu>::from_vector({20, d}, many);
  const auto ref = topk(matmul(qs, transpose(feats, 0, 1)), 7);
  const std::vector<float> ref_values = ref.values.to_vector();
  const auto blocked = top_n(feats, qs, 7);
  REQUIRE(blocked.size() == 20);
  for (size_t i = 0; i < 20; ++i) {
    REQUIRE(blocked[i].size() == 7);
    for (size_t j = 0; j < 7; ++j) CHECK(blocked[i][j].similarity == Approx(ref_values[i * 7 + j]).margin(1e-5));
  }
}

TEST_CASE("index file: bad files are refused with the file and byte offset named", "[search]") {
  fixtures::TempDir dir;
  const std::string good = dir / "good.idx";
  {
    IndexWriter w(good, IndexKind::texts, "m", 7, {"one", "two"}, 4);
    w.append(random_rows(2, 4, 3));
    w.finish();
  }
  const std::vector<uint8_t> bytes = read_bytes(good);
  REQUIRE(bytes.size() == 64 + 64 + 2 * 4 * 4);  // header, strings (23 bytes padded to 64), features
  REQUIRE_NOTHROW(FeatureIndex::read(good));
  const std::string bad = dir / "bad.idx";
  auto expect = [&](std::vector<uint8_t> b, const std::string& what) {
    write_bytes(bad, b);
    CHECK_THROWS_WITH(FeatureIndex::read(bad), Contains("bad.idx") && Contains(what));
  };
  auto patched = [&](size_t at, std::vector<uint8_t> with) {
    std::vector<uint8_t> b = bytes;
    std::copy(with.begin(), with.end(), b.begin() + static_cast<std::ptrdiff_t>(at));
    return b;
  };
  expect({}, "shorter than the 64-byte header");
  expect(patched(0, {'X'}), "bad magic at byte 0");
  expect(patched(8, {1}), "version 1 at byte 8");  // the FNV-1a format, whose checksum skipped the embeds
  expect(patched(12, {3}), "kind 3 at byte 12");
  expect(patched(16, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}), "count");
  expect(patched(24, {0, 0, 0, 0}), "feature size 0 at byte 24");
  expect(patched(28, {9}), "embeds type 9 at byte 28");
  expect(patched(28, {2}), "text index cannot hold image_embeds");
  expect(patched(48, {0xc0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}), "overflow");
  expect(patched(48, {0x41}), "does not end on a 64-byte boundary");
  expect(std::vector<uint8_t>(bytes.begin(), bytes.end() - 1), "truncated");
  expect(patched(64 + 9, {0x40}), "entry 0 at byte 73");              // a length past the section
  expect(patched(bytes.size() - 3, {0x11}), "checksum mismatch");     // a flipped feature byte
  expect(patched(64 + 9 + 4, {'O'}), "checksum mismatch");            // a changed entry
  expect(patched(64 + 30, {1}), "unused bytes at the end of the strings section");  // padding must be zeros
  expect(patched(8, {2}), "version 2 at byte 8");  // absolute paths and unaligned features: rebuild
  CHECK_THROWS_WITH(FeatureIndex::read(dir / "none.idx"), Contains("none.idx"));
  // Under a root, every entry must be a relative path below it (blip serve's /thumb serves them).
  for (const std::string& entry : {std::string("../etc/passwd"), std::string("/etc/passwd"), std::string("a/../../b.png")}) {
    const std::string rooted = dir / "rooted.idx";
    {
      IndexWriter w(rooted, IndexKind::images, "m", 7, {"ok.png", entry}, 4, EmbedsDtype::none, 0, 0, "/gallery");
      w.append(random_rows(2, 4, 5));
      w.finish();
    }
    CHECK_THROWS_WITH(FeatureIndex::read(rooted), Contains("entry 1 at byte") && Contains("not a relative path below the root"));
  }
  // A non-finite feature is refused by the writer (class 9 of issue 11), and by the reader even
  // with a valid checksum (test_robust_inputs: class 8).
  IndexWriter w(dir / "nan.idx", IndexKind::texts, "m", 7, {"x"}, 2);
  CHECK_THROWS_WITH(w.append(Tensor<float, Cpu>::from_vector({1, 2}, {0.5f, std::nanf("")})),
                    Contains("non-finite") && Contains("entry 0 ('x')"));
}

TEST_CASE("top_n equals a brute-force ranking; rerank reorders only the first k", "[search]") {
  const auto gallery = random_rows(200, 16, 4);
  const auto queries = random_rows(3, 16, 5);
  const auto hits = top_n(gallery, queries, 7);
  REQUIRE(hits.size() == 3);
  const auto g = gallery.to_vector(), q = queries.to_vector();
  for (size_t qi = 0; qi < 3; ++qi) {
    std::vector<std::pair<double, int64_t>> all;
    for (int64_t r = 0; r < 200; ++r) {
      double d = 0;
      for (size_t c = 0; c < 16; ++c) d += static_cast<double>(q[qi * 16 + c]) * g[static_cast<size_t>(r) * 16 + c];
      all.emplace_back(d, r);
    }
    std::sort(all.begin(), all.end(), std::greater<>());
    REQUIRE(hits[qi].size() == 7);
    for (size_t j = 0; j < 7; ++j) {
      CHECK(hits[qi][j].entry == all[j].second);
      CHECK(hits[qi][j].similarity == Approx(all[j].first).margin(1e-5));
    }
  }
  CHECK(top_n(gallery, queries, 500)[0].size() == 200);
  CHECK_THROWS_WITH(top_n(gallery, random_rows(1, 8, 1), 3), Contains("do not match"));

  const std::vector<SearchHit> base = hits[0];
  const auto re = rerank(base, 3, [&](const std::vector<int64_t>& entries) {
    REQUIRE(entries == std::vector<int64_t>{base[0].entry, base[1].entry, base[2].entry});
    return std::vector<float>{-1.f, 5.f, 0.f};
  });
  CHECK(re[0].entry == base[1].entry);
  CHECK(re[0].score == Approx(5.f + base[1].similarity));
  CHECK(re[1].entry == base[2].entry);
  CHECK(re[2].entry == base[0].entry);
  for (size_t j = 3; j < base.size(); ++j) {
    CHECK(re[j].entry == base[j].entry);
    CHECK(!re[j].reranked);
  }
}

TEST_CASE("gallery: index a folder and a text file with a tiny model, search both ways", "[search]") {
  fixtures::TempDir dir;
  std::filesystem::create_directories(dir.path / "imgs" / "sub");
  std::vector<std::string> made;
  for (int i = 0; i < 7; ++i) {
    const std::string p = i < 4 ? dir / ("imgs/i" + std::to_string(i) + ".png") : dir / ("imgs/sub/j" + std::to_string(i) + ".PNG");
    fixtures::write_random_png(p, 30 + i, 36, static_cast<uint64_t>(i));
    made.push_back(p);
  }
  fixtures::write_text(dir / "imgs/notes.txt", "not an image");
  const std::vector<std::string> files = list_image_files((dir.path / "imgs").string());
  std::sort(made.begin(), made.end());
  CHECK(files == made);
  CHECK_THROWS_WITH(list_image_files((dir.path / "imgs" / "none").string()), Contains("not a directory"));
  std::filesystem::create_directories(dir.path / "empty");
  CHECK_THROWS_WITH(list_image_files((dir.path / "empty").string()), Contains("no .jpg or .png files"));

  const auto model = fixtures::tiny_model(3, true);
  const auto other = fixtures::tiny_model(4, true);
  const auto tok = text::BertTokenizer::blip(fixtures::write_tiny_vocab(dir / "vocab.txt"), presets::tiny().max_txt_len);
  IndexBuildOptions o;
  o.model_name = "tiny";
  o.batch_size = 3;
  o.quiet = true;
  o.loader.workers = 2;
  o.embeds = EmbedsDtype::f32;
  build_image_index(*model, files, dir / "g.idx", o);
  o.embeds = EmbedsDtype::none;
  build_image_index(*model, files, dir / "g_noembeds.idx", o);
  const FeatureIndex ix = FeatureIndex::read(dir / "g.idx");
  const FeatureIndex ix_plain = FeatureIndex::read(dir / "g_noembeds.idx");
  REQUIRE(ix.size() == 7);
  CHECK(ix.entries() == files);

  // Brute force: every image's features and embeds on their own.
  const auto p = test_pipeline(*model);
  std::vector<std::vector<float>> feat;
  std::vector<Tensor<float, Cpu>> embeds;
  for (const auto& f : files) {
    const auto x = reshape(vision::load_and_preprocess(f, p), {1, 3, p.size, p.size});
    const auto out = model->extract_feat(&x, nullptr, true);
    feat.push_back(out.image_feat.to_vector());
    embeds.push_back(out.image_embeds);
  }
  const std::string query = "A dog on the beach!";
  const auto q = encode_texts(*model, tok, {query});
  const auto qf = model->extract_feat(nullptr, &q, false).text_feat.to_vector();
  std::vector<std::pair<float, int64_t>> want;
  for (int64_t i = 0; i < 7; ++i) {
    float itm = model->itm_scores({{0, 0}}, embeds[static_cast<size_t>(i)], model->encoder_ids(q.ids), q.mask)[0];
    double d = 0;
    for (size_t c = 0; c < qf.size(); ++c) d += qf[c] * feat[static_cast<size_t>(i)][c];
    want.emplace_back(static_cast<float>(d) + itm, i);
  }
  std::sort(want.begin(), want.end(), std::greater<>());
  for (const FeatureIndex* index : {&ix, &ix_plain}) {
    const auto hits = search_by_text(*model, tok, *index, query, 3, 7);  // re-rank everything: a full ITM ranking
    REQUIRE(hits.size() == 3);
    for (size_t j = 0; j < 3; ++j) {
      CHECK(hits[j].entry == want[j].second);
      CHECK(hits[j].score == Approx(want[j].first).margin(1e-4));
      CHECK(hits[j].reranked);
    }
  }
  CHECK_THROWS_WITH(search_by_text(*other, tok, ix, query, 3), Contains("another checkpoint"));

  // Several queries in one batch (as blip serve encodes them) rank as each on its own.
  const std::vector<TextQuery> batch{{query, 3, 7}, {"blue sky over a red car", 5, 0}, {"x", 1, 2}};
  const auto batched = search_by_texts(*model, tok, ix, batch);
  REQUIRE(batched.size() == 3);
  for (size_t b = 0; b < batch.size(); ++b) {
    const auto alone = search_by_text(*model, tok, ix, batch[b].text, batch[b].n, batch[b].rerank);
    REQUIRE(batched[b].size() == alone.size());
    for (size_t j = 0; j < alone.size(); ++j) {
      CHECK(batched[b][j].entry == alone[j].entry);
      CHECK(batched[b][j].score == Approx(alone[j].score).margin(1e-5));
    }
  }

  // Paths relative to a root; --append keeps the old rows and adds the new images' after them.
  {
    IndexBuildOptions r = o;
    r.embeds = EmbedsDtype::f32;
    r.root = listing_root(dir / "imgs");
    const std::vector<std::string> first(files.begin(), files.begin() + 4), rest(files.begin() + 4, files.end());
    build_image_index(*model, first, dir / "part.idx", r);
    const FeatureIndex part = FeatureIndex::read(dir / "part.idx");
    CHECK(part.root() == r.root);
    CHECK(part.entries()[0] == relative_to_root(files[0], r.root));
    CHECK(part.entries()[0].find('/') != 0);
    CHECK(part.entry_path(0) == files[0]);
    build_image_index(*model, rest, dir / "part.idx", r, &part);
    const FeatureIndex whole = FeatureIndex::read(dir / "part.idx");
    REQUIRE(whole.size() == 7);
    for (int64_t i = 0; i < 7; ++i) CHECK(whole.entry_path(i) == files[static_cast<size_t>(i)]);
    const auto a = whole.feats().to_vector(), b = ix.feats().to_vector();
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == Approx(b[i]).margin(1e-5));
    const auto e6 = whole.embeds({6}).to_vector(), e6_ix = ix.embeds({6}).to_vector();
    REQUIRE(e6.size() == e6_ix.size());
    for (size_t i = 0; i < e6.size(); i += 7) CHECK(e6[i] == Approx(e6_ix[i]).margin(1e-4));
    CHECK_THROWS_WITH(relative_to_root("/elsewhere/x.png", r.root), Contains("not under the index's root"));
    IndexBuildOptions other_embeds = r;
    other_embeds.embeds = EmbedsDtype::bf16;
    CHECK_THROWS_WITH(build_image_index(*model, rest, dir / "x.idx", other_embeds, &part), Contains("cannot append"));
  }

  // Texts, queried by an image.
  const std::vector<std::string> lines{"a dog on the beach", "a red car in snow", "two men in green shirt", "blue sky"};
  fixtures::write_text(dir / "captions.txt", "a dog on the beach\r\n\n  \na red car in snow\ntwo men in green shirt\nblue sky");
  CHECK(read_text_lines(dir / "captions.txt") == lines);
  CHECK_THROWS_WITH(read_text_lines(dir / "missing.txt"), Contains("missing.txt"));
  build_text_index(*model, tok, lines, dir / "t.idx", o);
  const FeatureIndex tix = FeatureIndex::read(dir / "t.idx");
  CHECK(tix.kind() == IndexKind::texts);
  CHECK_THROWS_WITH(search_by_text(*model, tok, tix, query, 2), Contains("index of texts"));
  // An image against an index of images: image to image, by similarity (the image itself first).
  const auto same = search_by_image(*model, tok, ix, files[0], 2);
  REQUIRE(same.size() == 2);
  CHECK(same[0].entry == 0);
  CHECK(same[0].similarity == Approx(1).margin(1e-5));
  CHECK_THROWS_WITH(search_by_image(*model, tok, ix, files[0], 2, 2), Contains("image-text pairs"));
  const auto plain = search_by_image(*model, tok, tix, files[2], 4);
  const auto reranked = search_by_image(*model, tok, tix, files[2], 4, 4);
  REQUIRE(plain.size() == 4);
  REQUIRE(reranked.size() == 4);
  std::vector<std::pair<float, int64_t>> want_t;
  for (int64_t t = 0; t < 4; ++t) {
    const auto tb = encode_texts(*model, tok, {lines[static_cast<size_t>(t)]});
    const auto tf = model->extract_feat(nullptr, &tb, false).text_feat.to_vector();
    double d = 0;
    for (size_t c = 0; c < tf.size(); ++c) d += tf[c] * feat[2][c];
    const float itm = model->itm_scores({{0, 0}}, embeds[2], model->encoder_ids(tb.ids), tb.mask)[0];
    want_t.emplace_back(static_cast<float>(d) + itm, t);
    bool found = false;
    for (const auto& h : plain)
      if (h.entry == t) {
        found = true;
        CHECK(h.similarity == Approx(d).margin(1e-5));
      }
    CHECK(found);
  }
  std::sort(want_t.begin(), want_t.end(), std::greater<>());
  for (size_t j = 0; j < 4; ++j) CHECK(reranked[j].entry == want_t[j].second);
}
