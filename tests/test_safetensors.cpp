// The safetensors reader on the golden weights and on damaged files.
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>

#include "blip/blip.hpp"
#include "blip/io/safetensors.hpp"
#include "golden_dirs.hpp"

using namespace blip;
using Catch::Matchers::Contains;

namespace {

std::string write_file(const std::string& name, const std::string& header, const std::string& data, int64_t claimed = -1) {
  const std::string path = (std::filesystem::temp_directory_path() / ("blip_st_" + name + ".safetensors")).string();
  std::ofstream out(path, std::ios::binary);
  const uint64_t n = claimed >= 0 ? static_cast<uint64_t>(claimed) : header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header << data;
  return path;
}

}  // namespace

TEST_CASE("golden weights load with every declared shape", "[io][golden]") {
  const auto sets = model_case_sets();
  REQUIRE_FALSE(sets.empty());  // the golden data must be found: a silent pass would prove nothing
  for (const auto& dir : sets) {
    INFO("case set " << dir);
    io::SafeTensorsFile file((dir / "weights.safetensors").string());
    REQUIRE(file.metadata().count("case_set") == 1);
    // temp and head.temp are one parameter stored twice.
    REQUIRE(file.load<float>("temp").item() == file.load<float>("head.temp").item());
    const auto ptr = file.load<int64_t>("head.queue_ptr");
    REQUIRE(ptr.shape() == Shape{1});
    for (const auto& [name, entry] : file.entries()) {
      if (entry.dtype == "F32") REQUIRE(file.load<float>(name).shape() == entry.shape);
      else REQUIRE(file.load<int64_t>(name).shape() == entry.shape);
    }
    // image queues hold unit columns
    const auto queue = file.load<double>("head.image_queue");
    const auto norms = sum(mul(queue, queue), {0}).to_vector();
    for (double n2 : norms) REQUIRE(n2 == Approx(1.0).epsilon(1e-5));
  }
}

TEST_CASE("damaged safetensors files give errors naming file, key and offsets", "[io][errors]") {
  const std::string four_floats(16, '\0');
  const std::string good = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
  REQUIRE(io::SafeTensorsFile(write_file("good", good, four_floats)).load<float>("w").numel() == 4);
  REQUIRE_THROWS_WITH(io::SafeTensorsFile(write_file("past_end", good, four_floats, 1 << 20)),
                      Contains("header length") && Contains("past the end"));
  REQUIRE_THROWS_WITH(io::SafeTensorsFile(write_file("truncated", good, std::string(8, '\0'))),
                      Contains("'w'") && Contains("outside the data section"));
  REQUIRE_THROWS_WITH(io::SafeTensorsFile(write_file("json", "{\"w\": [", four_floats)), Contains("invalid JSON"));
  REQUIRE_THROWS_WITH(io::SafeTensorsFile(write_file("count", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", four_floats)),
                      Contains("needs 12"));
  REQUIRE_THROWS_WITH(io::SafeTensorsFile(write_file("overlap",
                          R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", four_floats)),
                      Contains("overlap"));
  REQUIRE_THROWS_WITH(io::SafeTensorsFile(write_file("dtype", R"({"w":{"dtype":"Q9","shape":[4],"data_offsets":[0,16]}})", four_floats)),
                      Contains("unknown dtype"));
  REQUIRE_THROWS_WITH(io::SafeTensorsFile(write_file("huge", R"({"w":{"dtype":"F32","shape":[100000,100000,100000],"data_offsets":[0,16]}})", four_floats)),
                      Contains("more bytes than the file holds"));
  REQUIRE_THROWS_WITH(io::SafeTensorsFile("/nonexistent/x.safetensors"), Contains("cannot open"));
  REQUIRE_THROWS_WITH(io::SafeTensorsFile(write_file("good2", good, four_floats)).load<float>("missing"),
                      Contains("no tensor 'missing'"));
}

TEST_CASE("float32 tensors are used in place: copy-on-write views that outlive the file object", "[io]") {
  const std::string values(reinterpret_cast<const char*>(std::vector<float>{1.5f, -2.0f, 3.25f, 4.0f}.data()), 16);
  std::string header = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
  header.resize((header.size() + 7) / 8 * 8, ' ');  // aligned data, as safetensors writers pad it
  const std::string path = write_file("in_place", header, values);
  Tensor<float> view, again;
  Tensor<double> converted;
  {
    io::SafeTensorsFile file(path);
    view = file.load<float>("w");
    again = file.load<float>("w");
    converted = file.load<double>("w");
  }
  REQUIRE(view.data() == again.data());  // both are the mapping itself, not copies
  REQUIRE(converted.to_vector() == std::vector<double>{1.5, -2.0, 3.25, 4.0});
  REQUIRE(view.to_vector() == std::vector<float>{1.5f, -2.0f, 3.25f, 4.0f});  // alive after the file object
  fill_(view, 7.0f);  // private pages: the file keeps its values
  REQUIRE(again.to_vector() == std::vector<float>(4, 7.0f));
  REQUIRE(io::SafeTensorsFile(path).load<float>("w").to_vector() == std::vector<float>{1.5f, -2.0f, 3.25f, 4.0f});
  std::remove(path.c_str());
}
