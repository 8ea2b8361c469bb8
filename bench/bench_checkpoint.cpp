// Checkpoint load time against reading the file once (the target: a BLIP-base sized
// torch.save file loads in at most 1.5x the time of `cat file > /dev/null`, file cached):
//   read_file/<kind>        — read() the whole file through a 1 MiB buffer, like cat
//   load_pth                — TorchCheckpoint: open, then load<float> every tensor (all kept)
//   load_safetensors        — SafeTensorsFile: the same
//   load_state_dict_<kind>  — BLIP-base built once, then io::load_state_dict from a BLIP-base
//                             checkpoint with mmpretrain's names (BLIP_BENCH_MODEL_PTH /
//                             BLIP_BENCH_MODEL_SAFETENSORS); `bench_checkpoint --write-model=F`
//                             writes such a safetensors file, `--write-model-pth=F` the same
//                             state as a STORED torch.save zip (no PyTorch needed), or
//                             .venv/bin/python -c "import torch, safetensors.torch as s;
//                             torch.save({'meta': {}, 'state_dict': s.load_file('F')}, 'F.pth')"
//                             the same as a .pth
// Files come from BLIP_BENCH_PTH and BLIP_BENCH_SAFETENSORS (or --pth=FILE --safetensors=FILE);
// a benchmark whose file is not given is skipped. Each is read once before timing, so the page
// cache holds it. To make BLIP-base sized files (950 float32 tensors, 476M parameters: BLIP-base's
// shapes with momentum copies and both queues, 1.9 GB each) with the project's PyTorch:
//
//   .venv/bin/python - <<'EOF'
//   import torch, json, struct
//   vit = [('qkv.weight', (2304, 768)), ('qkv.bias', (2304,)), ('proj.weight', (768, 768)), ('proj.bias', (768,)),
//          ('norm1.weight', (768,)), ('norm1.bias', (768,)), ('norm2.weight', (768,)), ('norm2.bias', (768,)),
//          ('fc1.weight', (3072, 768)), ('fc1.bias', (3072,)), ('fc2.weight', (768, 3072)), ('fc2.bias', (768,))]
//   bert = [(f'{a}.{p}.{w}', (768, 768) if w == 'weight' else (768,)) for a in ('attention', 'crossattention')
//           for p in ('query', 'key', 'value', 'output.dense') for w in ('weight', 'bias')]
//   bert += [('attention.output.LayerNorm.weight', (768,)), ('attention.output.LayerNorm.bias', (768,)),
//            ('crossattention.output.LayerNorm.weight', (768,)), ('crossattention.output.LayerNorm.bias', (768,)),
//            ('intermediate.dense.weight', (3072, 768)), ('intermediate.dense.bias', (3072,)),
//            ('output.dense.weight', (768, 3072)), ('output.dense.bias', (768,)),
//            ('output.LayerNorm.weight', (768,)), ('output.LayerNorm.bias', (768,))]
//   shapes = {'visual.cls_token': (1, 1, 768), 'visual.pos_embed': (1, 577, 768),
//             'visual.patch_embed.weight': (768, 3, 16, 16), 'visual.patch_embed.bias': (768,),
//             'text.word_embeddings.weight': (30524, 768), 'text.position_embeddings.weight': (512, 768)}
//   shapes.update({f'visual.blocks.{i}.{n}': s for i in range(12) for n, s in vit})
//   shapes.update({f'text.layer.{i}.{n}': s for i in range(12) for n, s in bert})
//   shapes.update({k + '_m': s for k, s in list(shapes.items())})  # momentum copies
//   shapes.update({'head.image_queue': (256, 57600), 'head.text_queue': (256, 57600)})
//   shapes.update({f'extra.{i}': (768,) for i in range(950 - len(shapes))})
//   g = torch.Generator().manual_seed(0)
//   sd = {k: torch.randn(s, generator=g) for k, s in shapes.items()}
//   print(len(sd), sum(v.numel() for v in sd.values()))
//   torch.save({'meta': {'epoch': 1}, 'state_dict': sd}, '/tmp/blip_base.pth')
//   header, offset = {}, 0
//   for k, v in sd.items():
//       header[k] = {'dtype': 'F32', 'shape': list(v.shape), 'data_offsets': [offset, offset + 4 * v.numel()]}
//       offset += 4 * v.numel()
//   h = json.dumps(header).encode()
//   with open('/tmp/blip_base.safetensors', 'wb') as f:
//       f.write(struct.pack('<Q', len(h)) + h)
//       for v in sd.values(): f.write(v.numpy().tobytes())
//   EOF
//   BLIP_BENCH_PTH=/tmp/blip_base.pth BLIP_BENCH_SAFETENSORS=/tmp/blip_base.safetensors build/bench/bench_checkpoint
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <blip/io/model_state.hpp>
#include <blip/io/safetensors.hpp>
#include <blip/io/safetensors_writer.hpp>
#include <blip/io/crc32.hpp>
#include <blip/io/torch_checkpoint.hpp>
#include <blip/models/presets.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

std::string pth_path, safetensors_path, model_pth_path, model_safetensors_path;

// The issue's own measure: a BLIP-base model (built once, untimed) loads a real BLIP-base
// state dict with mmpretrain's names — what a user's program does.
blip::StandardBlip<float, blip::Cpu>& blip_base() {
  static auto* m = new blip::StandardBlip<float, blip::Cpu>(blip::presets::blip_base());
  return *m;
}
template <class File>
uint64_t load_into_model(const std::string& path) {
  const File file(path);
  blip::io::load_state_dict(blip_base(), file);
  return std::filesystem::file_size(path);
}

uint64_t read_whole_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return 0;
  std::vector<char> buffer(1 << 20);
  uint64_t total = 0;
  for (ssize_t n; (n = ::read(fd, buffer.data(), buffer.size())) > 0;) total += static_cast<uint64_t>(n);
  ::close(fd);
  return total;
}

template <class File>
uint64_t load_all(const std::string& path) {
  const File file(path);
  std::vector<blip::Tensor<float, blip::Cpu>> tensors;
  uint64_t bytes = 0;
  for (const std::string& name : file.keys()) {
    tensors.push_back(file.template load<float>(name));
    bytes += static_cast<uint64_t>(tensors.back().numel()) * sizeof(float);
  }
  return bytes;
}

void run(benchmark::State& state, const std::string& path, uint64_t (*fn)(const std::string&)) {
  if (path.empty()) {
    state.SkipWithError("file not given (BLIP_BENCH_PTH / BLIP_BENCH_SAFETENSORS)");
    return;
  }
  read_whole_file(path);  // into the page cache
  // The first load of a process also pays for first touches of fresh memory (on a VM: the host
  // backing guest pages, seconds for 1.9 GB); it is reported apart, the timed loads are steady.
  const auto start = std::chrono::steady_clock::now();
  uint64_t bytes = fn(path);
  state.counters["first_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (auto _ : state) benchmark::DoNotOptimize(bytes = fn(path));
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
}

void BM_read_file_pth(benchmark::State& s) { run(s, pth_path, read_whole_file); }
void BM_load_pth(benchmark::State& s) { run(s, pth_path, load_all<blip::io::TorchCheckpoint>); }
void BM_read_file_safetensors(benchmark::State& s) { run(s, safetensors_path, read_whole_file); }
void BM_load_safetensors(benchmark::State& s) { run(s, safetensors_path, load_all<blip::io::SafeTensorsFile>); }

void BM_read_file_model_pth(benchmark::State& s) { run(s, model_pth_path, read_whole_file); }
void BM_load_state_dict_pth(benchmark::State& s) { run(s, model_pth_path, load_into_model<blip::io::TorchCheckpoint>); }
void BM_read_file_model_safetensors(benchmark::State& s) { run(s, model_safetensors_path, read_whole_file); }
void BM_load_state_dict_safetensors(benchmark::State& s) {
  run(s, model_safetensors_path, load_into_model<blip::io::SafeTensorsFile>);
}

BENCHMARK(BM_read_file_pth)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_load_pth)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_read_file_safetensors)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_load_safetensors)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_read_file_model_pth)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_load_state_dict_pth)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_read_file_model_safetensors)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_load_state_dict_safetensors)->Unit(benchmark::kMillisecond)->Iterations(3);

// A torch.save-style checkpoint of `state` without PyTorch: a STORED zip ("archive/data.pkl",
// "archive/data/<i>"), each entry's data 64-byte aligned through a padding extra field as
// torch.save aligns them, and a protocol-2 pickle of {'state_dict': OrderedDict(name ->
// _rebuild_tensor_v2(...))}. Under 4 GiB (no zip64), float32 tensors only.
void write_torch_save(const std::string& path, const blip::io::StateDict& state) {
  std::string pkl = "\x80\x02}(";
  auto text = [&](const std::string& t) {
    pkl += 'X';
    for (int i = 0; i < 4; ++i) pkl += static_cast<char>((t.size() >> (8 * i)) & 0xff);
    pkl += t;
  };
  auto integer = [&](int64_t v) {
    pkl += 'J';
    for (int i = 0; i < 4; ++i) pkl += static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff);
  };
  text("state_dict");
  pkl += "ccollections\nOrderedDict\n)R(";
  std::vector<std::pair<std::string, blip::Tensor<float, blip::Cpu>>> storages;
  for (const std::string& name : state.keys()) {
    const auto t = blip::contiguous(state.load<float>(name));
    const std::string storage = std::to_string(storages.size());
    text(name);
    pkl += "ctorch._utils\n_rebuild_tensor_v2\n((";
    text("storage");
    pkl += "ctorch\nFloatStorage\n";
    text(storage);
    text("cpu");
    integer(t.numel());
    pkl += "tQ";
    integer(0);
    pkl += '(';
    for (int64_t d : t.shape()) integer(d);
    pkl += "t(";
    int64_t stride = 1;
    std::vector<int64_t> strides(t.shape().size());
    for (size_t d = strides.size(); d-- > 0;) {
      strides[d] = stride;
      stride *= t.shape()[d];
    }
    for (int64_t st : strides) integer(st);
    pkl += "t\x89" "ccollections\nOrderedDict\n)RtR";
    storages.emplace_back("archive/data/" + storage, t);
  }
  pkl += "uu.";

  std::FILE* f = std::fopen(path.c_str(), "wb");
  BLIP_CHECK(f, "cannot write ", path);
  std::string central;
  uint64_t offset = 0;
  uint16_t count = 0;
  auto put16 = [](std::string& b, uint16_t v) { b.append(reinterpret_cast<const char*>(&v), 2); };
  auto put32 = [](std::string& b, uint32_t v) { b.append(reinterpret_cast<const char*>(&v), 4); };
  auto entry = [&](const std::string& name, const void* data, uint64_t n) {
    BLIP_CHECK(offset + n < (uint64_t{1} << 32), "write_torch_save: over 4 GiB needs zip64");
    const uint32_t crc = blip::io::crc32(blip::io::crc32_init(), data, n);
    const uint64_t before = offset + 30 + name.size() + 4;
    const uint16_t pad = static_cast<uint16_t>((64 - before % 64) % 64);
    std::string h;
    put32(h, 0x04034b50);
    put16(h, 20), put16(h, 0), put16(h, 0), put16(h, 0), put16(h, 0x21);
    put32(h, crc), put32(h, static_cast<uint32_t>(n)), put32(h, static_cast<uint32_t>(n));
    put16(h, static_cast<uint16_t>(name.size())), put16(h, static_cast<uint16_t>(4 + pad));
    h += name;
    put16(h, 0x4246), put16(h, pad);  // "FB": torch.save's padding record
    h.append(pad, 'Z');
    std::fwrite(h.data(), 1, h.size(), f);
    std::fwrite(data, 1, n, f);
    std::string c;
    put32(c, 0x02014b50);
    put16(c, 20), put16(c, 20), put16(c, 0), put16(c, 0), put16(c, 0), put16(c, 0x21);
    put32(c, crc), put32(c, static_cast<uint32_t>(n)), put32(c, static_cast<uint32_t>(n));
    put16(c, static_cast<uint16_t>(name.size())), put16(c, 0), put16(c, 0), put16(c, 0), put16(c, 0);
    put32(c, 0), put32(c, static_cast<uint32_t>(offset));
    central += c + name;
    offset += h.size() + n;
    ++count;
  };
  entry("archive/data.pkl", pkl.data(), pkl.size());
  for (const auto& [name, t] : storages) entry(name, t.data(), static_cast<uint64_t>(t.numel()) * 4);
  std::string end;
  put32(end, 0x06054b50);
  put16(end, 0), put16(end, 0), put16(end, count), put16(end, count);
  put32(end, static_cast<uint32_t>(central.size())), put32(end, static_cast<uint32_t>(offset)), put16(end, 0);
  std::fwrite(central.data(), 1, central.size(), f);
  std::fwrite(end.data(), 1, end.size(), f);
  BLIP_CHECK(std::fclose(f) == 0, "cannot write ", path);
}

}  // namespace

int main(int argc, char** argv) {
  if (const char* p = std::getenv("BLIP_BENCH_PTH")) pth_path = p;
  if (const char* p = std::getenv("BLIP_BENCH_SAFETENSORS")) safetensors_path = p;
  if (const char* p = std::getenv("BLIP_BENCH_MODEL_PTH")) model_pth_path = p;
  if (const char* p = std::getenv("BLIP_BENCH_MODEL_SAFETENSORS")) model_safetensors_path = p;
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--write-model=", 14) == 0) {  // a BLIP-base checkpoint to load (random init)
      blip::Generator gen(0);
      blip_base().init_weights(gen);
      blip::io::save_safetensors(argv[i] + 14, blip::io::export_state_dict(blip_base()));
      return 0;
    }
    if (std::strncmp(argv[i], "--write-model-pth=", 18) == 0) {  // the same as a torch.save file, STORED
      blip::Generator gen(0);
      blip_base().init_weights(gen);
      write_torch_save(argv[i] + 18, blip::io::export_state_dict(blip_base()));
      return 0;
    }
    if (std::strncmp(argv[i], "--pth=", 6) == 0) pth_path = argv[i] + 6;
    else if (std::strncmp(argv[i], "--safetensors=", 14) == 0) safetensors_path = argv[i] + 14;
    else rest.push_back(argv[i]);
  }
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
