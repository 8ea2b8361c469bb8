// Input preparation on ONE core (the loader runs one such pipeline per core):
//   tokenize_25k   — BlipTokenizer on 25,000 COCO-length captions (ids + masks, max_length 35)
//   image_pipeline — decode a 640x480 JPEG + Pillow-bicubic resize to 384x384 + normalise to CHW
// It writes its inputs (/tmp/blip_bench_captions.txt, /tmp/blip_bench_640x480.jpg) so that
// bench/inputs_peers.py times HuggingFace tokenizers and Pillow on the very same data.
#include <benchmark/benchmark.h>
#include <stdio.h>

#include <jpeglib.h>

#include <blip/core/rng.hpp>
#include <blip/text/bert_tokenizer.hpp>
#include <blip/vision/pipeline.hpp>

#include <fstream>

namespace {

const char* kCaptions = "/tmp/blip_bench_captions.txt";
const char* kJpeg = "/tmp/blip_bench_640x480.jpg";

std::vector<std::string> make_captions() {
  static const char* subjects[] = {"A man", "Two dogs", "A woman", "A group of people", "A cat", "An old truck",
                                   "A little girl", "Three zebras", "A plate of food", "A red bus"};
  static const char* verbs[] = {"riding", "standing next to", "sitting on", "walking along", "looking at",
                                "playing with", "parked near", "eating", "holding", "crossing"};
  static const char* objects[] = {"a wave on top of a surfboard.", "a wooden bench in the park.",
                                  "the busy city street at night.", "a large white refrigerator.",
                                  "some broccoli and rice on a table.", "a frisbee on the beach!",
                                  "a snowy mountain slope, with skis.", "an umbrella in the rain.",
                                  "the kitchen counter near a window.", "a giraffe's tall neck."};
  std::vector<std::string> out;
  blip::Generator gen(2024);
  for (int i = 0; i < 25000; ++i)
    out.push_back(std::string(subjects[gen.uniform_int(10)]) + " " + verbs[gen.uniform_int(10)] + " " + objects[gen.uniform_int(10)]);
  std::ofstream file(kCaptions);
  for (const auto& c : out) file << c << "\n";
  return out;
}

// A 640x480 photo-like test image (smooth gradients + texture), JPEG quality 90, 4:2:0.
void write_jpeg() {
  const int w = 640, h = 480;
  std::vector<uint8_t> rgb(static_cast<size_t>(w * h * 3));
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &rgb[static_cast<size_t>((y * w + x) * 3)];
      p[0] = static_cast<uint8_t>((x * 255) / w);
      p[1] = static_cast<uint8_t>((y * 255) / h);
      p[2] = static_cast<uint8_t>(((x ^ y) * 7) & 255);
    }
  jpeg_compress_struct cinfo{};
  jpeg_error_mgr err{};
  cinfo.err = jpeg_std_error(&err);
  jpeg_create_compress(&cinfo);
  FILE* f = fopen(kJpeg, "wb");
  jpeg_stdio_dest(&cinfo, f);
  cinfo.image_width = w;
  cinfo.image_height = h;
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, 90, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = &rgb[static_cast<size_t>(cinfo.next_scanline) * w * 3];
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  fclose(f);
  jpeg_destroy_compress(&cinfo);
}

void BM_tokenize_25k(benchmark::State& state) {
  const auto captions = make_captions();
  const auto tok = blip::text::BertTokenizer::blip(BLIP_VOCAB);
  for (auto _ : state)
    for (const auto& c : captions) benchmark::DoNotOptimize(tok.encode(c));
  state.counters["captions_per_s"] = benchmark::Counter(25000.0 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_image_pipeline(benchmark::State& state) {
  write_jpeg();
  const auto bytes = blip::vision::read_file_bytes(kJpeg);
  for (auto _ : state) benchmark::DoNotOptimize(blip::vision::preprocess_image(bytes.data(), bytes.size(), kJpeg).data());
  state.counters["images_per_s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(BM_tokenize_25k)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_image_pipeline)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
