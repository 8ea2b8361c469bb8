// The op table across backends, in the style of ggml's test-backend-ops: every op, with shapes,
// views and strides, forward and backward, on every backend and variant present, against the
// same op in float64 on the CPU's portable path.
//
// Variants: float on the CPU with each instruction set the machine runs (portable, avx2,
// avx512); float with bf16 GEMMs and with int8 linear layers (PrecisionScope) for the ops whose
// forward has a reduced-precision path; float
// on Cuda where a GPU is present. A case a variant cannot run (a kernel the device lacks, no GPU)
// is listed as skipped with the reason, never hidden: the table is printed at the end.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "blip/blip.hpp"
#include "blip/backend/cuda/kernels.hpp"
#include "blip/backend/cuda/runtime.hpp"

namespace {

using namespace blip;
using backend::Kernel;

// What a case gives back: its outputs, then the gradients of its inputs, flattened.
using Result = std::vector<std::vector<double>>;

// Builds a case's inputs (deterministic from the case's seed), collects outputs, and runs the
// backward of L = sum_i sum(out_i * R_i) with fixed random R_i.
template <class T, class D>
struct Env {
  using value_type = T;
  using device_type = D;
  uint64_t seed;
  int count = 0;
  std::vector<Tensor<T, D>> inputs;
  std::vector<Tensor<T, D>> outputs;
  std::vector<Tensor<int64_t, D>> int_outputs;  // compared exactly (after the float outputs)

  // Values drawn in double on the CPU (the same for every T), then converted and moved to D.
  Tensor<T, D> input(const Shape& shape, double lo = -1.0, double hi = 1.0, bool grad = true) {
    Generator gen(seed * 1000 + static_cast<uint64_t>(count++));
    const Tensor<double> values = rand_uniform<double>(shape, gen, lo, hi);
    Tensor<T, D> x = to<D>(cast<T>(values));
    if (grad) {
      x.set_requires_grad(true);
      inputs.push_back(x);
    }
    return x;
  }
  Tensor<int64_t, D> ints(const Shape& shape, const std::vector<int64_t>& values) {
    return to<D>(Tensor<int64_t>::from_vector(shape, values));
  }
  void output(const Tensor<T, D>& y) { outputs.push_back(y); }
  void output(const Tensor<int64_t, D>& y) { int_outputs.push_back(y); }
};

template <class T, class D>
std::vector<double> host(const Tensor<T, D>& x) {
  const std::vector<T> v = to<Cpu>(contiguous(x.detach())).to_vector();
  return std::vector<double>(v.begin(), v.end());
}

struct Case {
  std::string name;
  std::vector<Kernel> kernels;  // what the case needs of a device
  bool has_bf16 = false;        // its forward runs a bf16 path under PrecisionScope
  std::function<Result()> reference, cpu_float, cuda_float, cpu_float_forward, cuda_float_forward;
};

template <class T, class D, class F>
Result run(uint64_t seed, const F& body, bool backward) {
  Env<T, D> e{seed, 0, {}, {}, {}};
  body(e);
  Result r;
  for (const auto& y : e.outputs) r.push_back(host(y));
  for (const auto& y : e.int_outputs) r.push_back(host(y));
  if (backward && !e.inputs.empty()) {
    Tensor<T, D> loss;
    for (size_t i = 0; i < e.outputs.size(); ++i) {
      Generator gen(seed * 7919 + i);
      const Tensor<T, D> weights = to<D>(cast<T>(rand_uniform<double>(e.outputs[i].shape(), gen, -1.0, 1.0)));
      const Tensor<T, D> term = sum(mul(e.outputs[i], weights));
      loss = loss.defined() ? add(loss, term) : term;
    }
    loss.backward();
    for (const auto& x : e.inputs) r.push_back(x.grad().defined() ? host(x.grad()) : std::vector<double>(x.numel(), 0.0));
  }
  return r;
}

template <class F>
Case make_case(std::string name, std::vector<Kernel> kernels, F body, bool backward = true, bool has_bf16 = false) {
  const uint64_t seed = std::hash<std::string>{}(name) % 100003;
  return Case{name, std::move(kernels), has_bf16,
              [=] { return run<double, Cpu>(seed, body, backward); },
              [=] { return run<float, Cpu>(seed, body, backward); },
              [=] { return run<float, Cuda>(seed, body, backward); },
              [=] { return run<float, Cpu>(seed, body, false); },
              [=] { return run<float, Cuda>(seed, body, false); }};
}

// The worst error over all tensors, each relative to its own largest reference magnitude.
double compare(const Result& ours, const Result& ref, std::string& where) {
  if (ours.size() != ref.size()) {
    where = "different tensor count";
    return INFINITY;
  }
  double worst = 0;
  for (size_t t = 0; t < ref.size(); ++t) {
    if (ours[t].size() != ref[t].size()) {
      where = "tensor " + std::to_string(t) + " has another size";
      return INFINITY;
    }
    double scale = 1e-3;
    for (double v : ref[t]) scale = std::max(scale, std::abs(v));
    for (size_t i = 0; i < ref[t].size(); ++i) {
      const double err = std::abs(ours[t][i] - ref[t][i]) / scale;
      if (!(err <= worst)) {
        worst = std::isnan(err) ? INFINITY : err;
        where = "tensor " + std::to_string(t) + " element " + std::to_string(i);
      }
    }
  }
  return worst;
}

std::vector<Case> op_table() {
  std::vector<Case> t;
  t.push_back(make_case("matmul batched, transposed view", {Kernel::gemm_batched}, [](auto& e) {
    auto a = e.input({3, 5, 7});
    auto b = e.input({3, 6, 7});
    e.output(matmul(a, transpose(b, -1, -2)));
  }));
  t.push_back(make_case("matmul broadcast 2-D operand", {Kernel::gemm_batched}, [](auto& e) {
    auto a = e.input({2, 4, 9});
    auto b = e.input({9, 3});
    e.output(matmul(a, b));
  }));
  t.push_back(make_case("linear, 35 rows (primitive)", {Kernel::linear, Kernel::gemm_batched, Kernel::sum_middle},
                        [](auto& e) {
                          auto x = e.input({5, 7, 48});
                          auto w = e.input({40, 48});
                          auto b = e.input({40});
                          e.output(linear(x, w, b));
                        }, true, true));
  t.push_back(make_case("linear, 600 rows (sgemm), no bias", {Kernel::linear, Kernel::gemm_batched}, [](auto& e) {
    auto x = e.input({600, 33});
    auto w = e.input({17, 33});
    e.output(linear(x, w));
  }, true, true));
  t.push_back(make_case("add/sub/mul/div broadcast + strided", {Kernel::binary, Kernel::sum_middle, Kernel::scale},
                        [](auto& e) {
                          auto a = e.input({4, 6});
                          auto b = e.input({6});
                          auto c = e.input({6, 4});
                          auto d = e.input({4, 1}, 0.5, 2.0);
                          e.output(div(mul(sub(add(a, b), transpose(c, 0, 1)), a), d));
                        }));
  t.push_back(make_case("scale, neg", {Kernel::scale}, [](auto& e) {
    auto a = e.input({3, 17});
    e.output(neg(a * 0.37));
  }));
  t.push_back(make_case("gelu (erf)", {Kernel::unary, Kernel::gelu_backward}, [](auto& e) {
    e.output(gelu(e.input({3, 37}, -5.0, 5.0)));
  }));
  t.push_back(make_case("tanh", {Kernel::unary, Kernel::binary}, [](auto& e) { e.output(tanh(e.input({29}, -3.0, 3.0))); }));
  t.push_back(make_case("exp", {Kernel::unary, Kernel::binary}, [](auto& e) { e.output(exp(e.input({41}, -20.0, 5.0))); }));
  t.push_back(make_case("log", {Kernel::unary, Kernel::binary}, [](auto& e) { e.output(log(e.input({23}, 0.1, 9.0))); }));
  t.push_back(make_case("softmax, strided input", {Kernel::softmax, Kernel::softmax_backward}, [](auto& e) {
    auto x = e.input({37, 5}, -8.0, 8.0);
    e.output(softmax(transpose(x, 0, 1)));
  }));
  t.push_back(make_case("softmax, wide rows", {Kernel::softmax, Kernel::softmax_backward}, [](auto& e) {
    e.output(softmax(e.input({3, 577}, -8.0, 8.0)));
  }));
  t.push_back(make_case("log_softmax", {Kernel::log_softmax, Kernel::log_softmax_backward}, [](auto& e) {
    e.output(log_softmax(e.input({4, 45}, -8.0, 8.0)));
  }));
  t.push_back(make_case("layer_norm", {Kernel::layer_norm, Kernel::layer_norm_backward}, [](auto& e) {
    auto x = e.input({2, 5, 77}, -2.0, 3.0);
    auto w = e.input({77});
    auto b = e.input({77});
    e.output(layer_norm(x, w, b, 1e-6));
  }));
  t.push_back(make_case("l2_normalize", {Kernel::l2_normalize, Kernel::l2_normalize_backward}, [](auto& e) {
    e.output(l2_normalize(e.input({6, 19})));
  }));
  t.push_back(make_case("sum, mean over axes", {Kernel::sum_middle, Kernel::scale}, [](auto& e) {
    auto x = e.input({3, 4, 5});
    e.output(sum(x, {0, 2}));
    e.output(mean(x, {1}, true));
  }));
  t.push_back(make_case("index_select (repeats), embedding (padding)",
                        {Kernel::check_indices, Kernel::gather, Kernel::scatter_add}, [](auto& e) {
                          auto x = e.input({4, 5, 3});
                          e.output(index_select(x, 1, e.ints({6}, {4, 0, 0, 2, 4, 1})));
                          auto w = e.input({7, 6});
                          e.output(embedding(e.ints({2, 3}, {0, 6, 2, 2, 0, 5}), w, 0));
                        }));
  t.push_back(make_case("concat, stack", {Kernel::assign}, [](auto& e) {
    auto a = e.input({2, 3});
    auto b = e.input({2, 4});
    e.output(concat(std::vector{a, b}, 1));
    e.output(stack(std::vector{a, a}, 0));
  }));
  t.push_back(make_case("masked_fill", {Kernel::masked_fill, Kernel::masked_fill_backward}, [](auto& e) {
    auto x = e.input({3, 4});
    using D = typename std::decay_t<decltype(e)>::device_type;
    const Tensor<int64_t, D> mask = e.ints({1, 4}, {1, 0, 0, 1});
    e.output(masked_fill(x, mask, typename std::decay_t<decltype(e)>::value_type(-7)));
  }));
  t.push_back(make_case("topk", {Kernel::topk, Kernel::topk_backward}, [](auto& e) {
    auto x = e.input({3, 50});
    e.output(topk(x, 5).values);
  }));
  t.push_back(make_case("cross_entropy", {Kernel::log_softmax, Kernel::check_indices, Kernel::nll_mean,
                                          Kernel::nll_mean_backward},
                        [](auto& e) {
                          auto x = e.input({5, 11}, -4.0, 4.0);
                          e.output(cross_entropy(x, e.ints({5}, {0, 10, 3, 3, 7})));
                        }));
  t.push_back(make_case(
      "attention, key mask", {Kernel::attention, Kernel::attention_bf16, Kernel::attention_backward},
      [](auto& e) {
        auto q = e.input({2, 3, 70, 8});
        auto k = e.input({2, 3, 9, 8});
        auto v = e.input({2, 3, 9, 5});
        auto m = e.input({2, 1, 1, 9}, -3.0, 0.0, false);
        e.output(scaled_dot_product_attention(q, k, v, m));
      },
      true, true));
  t.push_back(make_case(
      "attention, kv_index shared, strided q", {Kernel::attention, Kernel::attention_bf16, Kernel::attention_backward},
      [](auto& e) {
        auto q = e.input({4, 6, 2, 8});  // [B, S, H, d] viewed as [B, H, S, d]
        auto k = e.input({2, 2, 11, 8});
        auto v = e.input({2, 2, 11, 8});
        e.output(scaled_dot_product_attention(permute(q, {0, 2, 1, 3}), k, v, {}, 0.0, e.ints({4}, {1, 1, 0, 1})));
      },
      true, true));
  t.push_back(make_case(
      "attention, no mask, scale given", {Kernel::attention, Kernel::attention_bf16, Kernel::attention_backward},
      [](auto& e) {
        auto q = e.input({1, 2, 130, 16});
        auto k = e.input({1, 2, 67, 16});
        auto v = e.input({1, 2, 67, 12});
        e.output(scaled_dot_product_attention(q, k, v, {}, 0.3));
      },
      true, true));
  t.push_back(make_case("feed_forward_gelu", {Kernel::linear, Kernel::unary, Kernel::gelu_backward, Kernel::gemm_batched},
                        [](auto& e) {
                          auto x = e.input({9, 12});
                          auto w1 = e.input({20, 12});
                          auto b1 = e.input({20});
                          auto w2 = e.input({12, 20});
                          auto b2 = e.input({12});
                          e.output(feed_forward_gelu(x, w1, b1, w2, b2));
                        }, true, true));
  t.push_back(make_case("AdamW step, momentum EMA", {Kernel::adamw, Kernel::ema}, [](auto& e) {
    using T = typename std::decay_t<decltype(e)>::value_type;
    using D = typename std::decay_t<decltype(e)>::device_type;
    Parameter<T, D> p(e.input({50}, -1.0, 1.0, false));
    p.copy_params();
    AdamW<T, D> opt({{"p", &p}}, {.lr = 0.1, .weight_decay = 0.05});
    for (int step = 0; step < 3; ++step) {
      Tensor<T, D> loss = sum(mul(p.value(), e.input({50}, -1.0, 1.0, false)));
      loss.backward();
      opt.step();
      opt.zero_grad();
      p.momentum_update(0.9);
    }
    e.output(p.value().detach());
    e.output(p.momentum());
  }, false));
  // The contrastive step's bookkeeping (ops/contrastive.hpp): integer results compare exactly, and
  // the Philox draws are the same bits on every backend.
  t.push_back(make_case("arange (repeat), clamp_", {Kernel::iota, Kernel::clamp}, [](auto& e) {
    using T = typename std::decay_t<decltype(e)>::value_type;
    using D = typename std::decay_t<decltype(e)>::device_type;
    e.output(arange<T, D>(4, T(-2), 3));
    e.output(arange<int64_t, D>(5, 7));
    const Tensor<T, D> x = clone(e.input({30}, -2.0, 2.0, false));
    clamp_(x, T(-0.5), T(1.25));
    e.output(x);
  }, false));
  t.push_back(make_case("dropout (Philox mask)", {Kernel::dropout_mask, Kernel::binary}, [](auto& e) {
    auto x = e.input({7, 33});
    Generator gen(5);
    e.output(dropout(x, 0.3, gen));
  }));
  t.push_back(make_case("match_ids (mask, targets), topk_scatter",
                        {Kernel::match_ids, Kernel::topk, Kernel::topk_backward, Kernel::check_indices},
                        [](auto& e) {
                          using T = typename std::decay_t<decltype(e)>::value_type;
                          const auto rows = e.ints({3}, {4, 9, 2});
                          const auto cols = e.ints({7}, {9, 4, 4, 1, -100, 4, 3});
                          e.output(match_ids<T>(rows, cols, true));
                          e.output(masked_fill(e.input({3, 7}, -1.0, 1.0, false), match_ids<uint8_t>(rows, cols, false),
                                               T(0)));
                          const auto top = topk(e.input({4, 9}, -1.0, 1.0, false), 3);
                          e.output(topk_scatter(top.values, top.indices, 9, T(-100)));
                        }, false));
  t.push_back(make_case("sample_negatives (Philox multinomial, fallbacks)", {Kernel::sample_negatives, Kernel::match_ids,
                                                                             Kernel::softmax, Kernel::masked_fill},
                        [](auto& e) {
                          using T = typename std::decay_t<decltype(e)>::value_type;
                          const auto ids = e.ints({6}, {1, 2, 1, 3, 3, 3});
                          const auto w = masked_fill(softmax(e.input({6, 6}, -3.0, 3.0, false)),
                                                     match_ids<uint8_t>(ids, ids, false), T(0));
                          e.output(sample_negatives(w, ids, ids, 0, 11));
                          // No positive weight: another id (rows 0-1), else another sample (row 2).
                          const auto same = e.ints({3}, {5, 5, 5});
                          const auto none = masked_fill(e.input({3, 3}), match_ids<uint8_t>(same, same, false), T(0));
                          e.output(sample_negatives(narrow(none, 0, 0, 2), e.ints({2}, {5, 5}), e.ints({3}, {5, 6, 5}), 1, 12));
                          e.output(sample_negatives(none, same, same, 0, 13));
                        }, false));
  t.push_back(make_case("queue enqueue (wrapping, B > Q), advance", {Kernel::queue_enqueue, Kernel::queue_advance},
                        [](auto& e) {
                          using T = typename std::decay_t<decltype(e)>::value_type;
                          using D = typename std::decay_t<decltype(e)>::device_type;
                          const Tensor<T, D> queue = clone(e.input({3, 5}, -1.0, 1.0, false));
                          const Tensor<int64_t, D> ptr = e.ints({1}, {3});
                          enqueue_columns(queue, e.input({4, 3}, -1.0, 1.0, false), ptr);  // columns 3, 4, 0, 1
                          enqueue_advance(ptr, 4, 5);
                          enqueue_columns(queue, e.input({7, 3}, -1.0, 1.0, false), ptr);  // the last 5 win
                          enqueue_advance(ptr, 7, 5);
                          e.output(queue);
                          e.output(ptr);
                        }, false));
  return t;
}

bool cuda_present() { return cuda::device_count() > 0; }

// max |y - ref| / max |ref| over all elements.
double max_rel_error(const Tensor<float>& y, const Tensor<float>& ref) {
  const std::vector<float> a = y.detach().to_vector(), r = ref.to_vector();
  double err = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    err = std::max(err, std::abs(double(a[i]) - r[i]));
    scale = std::max(scale, std::abs(double(r[i])));
  }
  return err / scale;
}

}  // namespace

TEST_CASE("backend ops: every op on every backend and variant against float64") {
  const std::vector<Case> table = op_table();
  std::vector<cpu::Isa> isas;
  for (cpu::Isa isa : {cpu::Isa::portable, cpu::Isa::avx2, cpu::Isa::avx512})
    if (static_cast<int>(isa) <= static_cast<int>(cpu::detected_isa())) isas.push_back(isa);
  const cpu::Isa initial = cpu::active_isa();

  struct Row {
    std::string op, variant, status;
  };
  std::vector<Row> rows;
  int failures = 0;
  const auto check = [&](const Case& c, const std::string& variant, const Result& ours, const Result& ref, double tol) {
    std::string where;
    const double err = compare(ours, ref, where);
    const bool ok = err <= tol;
    char line[160];
    std::snprintf(line, sizeof line, "%s (max rel. error %.2g, tolerance %.2g%s%s)", ok ? "ok" : "FAIL", err, tol,
                  ok ? "" : ", at ", ok ? "" : where.c_str());
    rows.push_back({c.name, variant, line});
    failures += !ok;
    CHECK(err <= tol);
  };
  for (const Case& c : table) {
    INFO("op: " << c.name);
    cpu::set_isa(cpu::Isa::portable);
    const Result ref = c.reference();
    for (cpu::Isa isa : isas) {
      cpu::set_isa(isa);
      check(c, std::string("cpu float ") + cpu::isa_name(isa), c.cpu_float(), ref, 2e-5);
    }
    cpu::set_isa(initial);
    if (c.has_bf16) {
      const PrecisionScope bf16(Precision::bf16);
      NoGradGuard no_grad;  // the bf16 path is for inference: forward only
      Result ours = c.cpu_float_forward();
      Result ref_fwd = ref;
      ref_fwd.resize(ours.size());
      check(c, "cpu bf16 GEMM (forward)", ours, ref_fwd, 3e-2);
      {
        const PrecisionScope int8(Precision::int8);  // int8 linear layers, per-token activation scales
        check(c, "cpu int8 linear (forward)", c.cpu_float_forward(), ref_fwd, 3e-2);
      }
      const PrecisionScope fp16(Precision::fp16);  // fp16 linear layers where the CPU has AVX512-FP16
      check(c, cpu::f16_products_available() ? "cpu fp16 linear (forward)" : "cpu fp16 scope (no AVX512-FP16: bf16)",
            c.cpu_float_forward(), ref_fwd, 3e-2);
    } else {
      rows.push_back({c.name, "cpu bf16 GEMM", "skipped: no bf16 path"});
    }
    if (c.has_bf16) {  // training autocast: bf16 products forward and backward, weights converted per use
      {
        const PrecisionScope autocast(Precision::bf16, PrecisionScope::Weights::changing);
        check(c, "cpu bf16 autocast (fwd+bwd)", c.cpu_float(), ref, 3e-2);
      }
      // fp16 products forward and backward (gemm_f16), held to a tighter bound than bf16's
      // (attention follows bf16_products: bf16 where they pay or are forced, as under ctest)
      const PrecisionScope autocast(Precision::fp16, PrecisionScope::Weights::changing);
      const bool bf16_attention = std::find(c.kernels.begin(), c.kernels.end(), Kernel::attention) != c.kernels.end() &&
                                  cpu::bf16_products_pay();
      if (cpu::f16_products_available())
        check(c, bf16_attention ? "cpu fp16 autocast (attn bf16)" : "cpu fp16 autocast (fwd+bwd)", c.cpu_float(), ref,
              bf16_attention ? 3e-2 : 5e-3);
      else rows.push_back({c.name, "cpu fp16 autocast", "skipped: no AVX512-FP16 (bf16 path)"});
    }
    std::string missing;
    for (Kernel k : c.kernels)
      if (!backend::supports<Cuda>(k)) missing += (missing.empty() ? "" : ", ") + std::string(backend::kernel_name(k));
    if (!missing.empty()) rows.push_back({c.name, "cuda float", "skipped: no cuda kernel for " + missing});
    else if (!cuda_present()) rows.push_back({c.name, "cuda float", "skipped: no CUDA device in this run"});
    else {
      // Attention has several kernel families on Cuda (cuda::AttentionKernel): each runs.
      const bool attention = std::find(c.kernels.begin(), c.kernels.end(), Kernel::attention) != c.kernels.end();
      const cuda::AttentionKernel before = cuda::attention_kernel();
      std::vector<cuda::AttentionKernel> kinds{before};
      if (attention) kinds = {cuda::AttentionKernel::direct, cuda::AttentionKernel::tiled, cuda::AttentionKernel::tensor_core};
      for (cuda::AttentionKernel kind : kinds) {
        cuda::set_attention_kernel(kind);
        const std::string suffix = attention ? std::string(" (attention ") + cuda::attention_kernel_name(kind) + ")" : "";
        check(c, "cuda float" + suffix, c.cuda_float(), ref, 1e-4);
        if (c.has_bf16) {
          const PrecisionScope bf16(Precision::bf16);
          NoGradGuard no_grad;
          Result ours = c.cuda_float_forward();
          Result ref_fwd = ref;
          ref_fwd.resize(ours.size());
          check(c, "cuda bf16 (forward)" + suffix, ours, ref_fwd, 3e-2);
        }
      }
      cuda::set_attention_kernel(before);
    }
  }
  std::printf("\nop table (%zu ops; CPU detected %s):\n", table.size(), cpu::isa_name(cpu::detected_isa()));
  for (const Row& r : rows) std::printf("  %-46s %-26s %s\n", r.op.c_str(), r.variant.c_str(), r.status.c_str());
  std::printf("%d failed\n", failures);
}

#ifdef BLIP_WITH_CUDA
// cuBLAS is opened at run time (src/cuda/cublas_api.hpp): the library name and symbols must be
// right on a machine with the toolkit even when it has no GPU.
TEST_CASE("backend ops: cuBLAS opens on demand, without a GPU") {
  const int version = cuda::cublas_version();
  INFO("cuBLAS " << version);
  CHECK(version >= 120000);
  const size_t lt_version = cuda::cublas_lt_version();  // linear layers' cuBLASLt, opened the same way
  INFO("cuBLASLt " << lt_version);
  CHECK(lt_version >= 120000);
}
#endif

// The CUDA switches are plain process state, readable (and settable) in any build.
TEST_CASE("backend ops: the CUDA switches (attention family, TF32) parse and keep their value") {
  CHECK(cuda::parse_attention_kernel("tiled") == cuda::AttentionKernel::tiled);
  CHECK_THROWS_WITH(cuda::parse_attention_kernel("flash3"), Catch::Contains("flash3"));
  const cuda::AttentionKernel before = cuda::attention_kernel();
  cuda::set_attention_kernel(cuda::AttentionKernel::direct);
  CHECK(cuda::attention_kernel() == cuda::AttentionKernel::direct);
  cuda::set_attention_kernel(before);
  const bool tf32 = cuda::tf32();
  CHECK_FALSE(tf32);  // off unless BLIP_CUDA_TF32=1: fp32 means fp32
  cuda::set_tf32(true);
  CHECK(cuda::tf32());
  cuda::set_tf32(tf32);
}

TEST_CASE("backend ops: the kernel list and supports<D> agree") {
  for (size_t i = 0; i < backend::kernel_count; ++i) CHECK(backend::supports<Cpu>(static_cast<Kernel>(i)));
  // Cuda has what BLIP_CUDA_MISSING does not list; a missing one throws naming itself.
  CHECK(backend::supports<Cuda>(Kernel::gemm));
  CHECK(backend::supports<Cuda>(Kernel::layer_norm));
  CHECK(backend::supports<Cuda>(Kernel::topk));
  CHECK_FALSE(backend::supports<Cuda>(Kernel::quantize_rows_s8));
  CHECK_THROWS_WITH(backend::Kernels<Cuda>::quantize_rows_s8(nullptr, 1, 2.0), Catch::Contains("quantize_rows_s8"));
  CHECK(backend::kernel_name(Kernel::attention_backward) == "attention_backward");
}

TEST_CASE("backend ops: BLIP_CPU_ISA-style choices beyond the CPU are refused") {
  if (cpu::detected_isa() != cpu::Isa::avx512) {
    CHECK_THROWS_WITH(cpu::set_isa(cpu::Isa::avx512), Catch::Contains("at most"));
  }
  CHECK_THROWS_WITH(cpu::parse_isa("sse9"), Catch::Contains("sse9"));
  CHECK(cpu::parse_isa("avx2") == cpu::Isa::avx2);
}

// Whether a bf16 scope multiplies in bf16 on this CPU (backend/cpu/bf16_products.hpp): off gives the
// fp32 results bit for bit, on gives the rounded operands' products, auto follows the measurement.
// (ctest runs every other test with BLIP_CPU_BF16=on, so the bf16 kernels are checked on every CPU.)
TEST_CASE("backend ops: bf16 products run where they pay, float products elsewhere") {
  const cpu::Bf16Products before = cpu::bf16_products_setting();
  Generator gen(47);
  const Tensor<float> x = randn<float>({35, 96}, gen), w = randn<float>({64, 96}, gen), b = randn<float>({64}, gen);
  const Tensor<float> q = randn<float>({2, 3, 35, 32}, gen), k = randn<float>({2, 3, 50, 32}, gen),
                      v = randn<float>({2, 3, 50, 32}, gen);
  const auto run = [&](cpu::Bf16Products setting, bool scoped) {
    cpu::set_bf16_products(setting);
    std::optional<PrecisionScope> scope;
    if (scoped) scope.emplace(Precision::bf16);
    return std::pair{linear(x, w, b).to_vector(), scaled_dot_product_attention(q, k, v).to_vector()};
  };
  const auto fp32 = run(cpu::Bf16Products::off, false);
  const auto off = run(cpu::Bf16Products::off, true);
  const auto on = run(cpu::Bf16Products::on, true);
  CHECK(off == fp32);
  CHECK(on.first != fp32.first);
  CHECK(on.second != fp32.second);
  const auto automatic = run(cpu::Bf16Products::automatic, true);
  const cpu::Bf16Timing& t = cpu::bf16_timing();
  const bool pays = t.bf16_available && t.bf16_seconds <= 0.8 * t.float_seconds;
  CHECK(cpu::bf16_products_pay() == pays);
  CHECK(automatic == (pays ? on : fp32));
  if (t.bf16_available) {
    CHECK(t.float_seconds > 0);
    CHECK(t.bf16_seconds > 0);
  }
  WARN("bf16 products on this CPU: " << (pays ? "yes" : "no") << " (a 256x768x768 linear: float "
                                     << t.float_seconds * 1e3 << " ms, bf16 " << t.bf16_seconds * 1e3 << " ms)");
  CHECK_THROWS_WITH(cpu::parse_bf16_products("fast"), Catch::Contains("BLIP_CPU_BF16") && Catch::Contains("fast"));
  CHECK(cpu::parse_bf16_products("off") == cpu::Bf16Products::off);
  CHECK(backend::Kernels<Cuda>::bf16_products_pay());
  cpu::set_bf16_products(before);
}

TEST_CASE("backend ops: a packed bf16 weight gives the plain bf16 product, at any row count") {
  Generator gen(41);
  for (auto [out, in] : {std::pair<int64_t, int64_t>{40, 48}, {17, 33}, {256, 192}}) {
    const Tensor<float> w = randn<float>({out, in}, gen);
    std::vector<bf16> w16(static_cast<size_t>(out * in));
    backend::Kernels<Cpu>::to_bf16(w.data(), w16.data(), out * in);
    const backend::PackedWeight packed = backend::Kernels<Cpu>::pack_linear_bf16(w16.data(), out, in);
    if (!packed) {
      WARN("this CPU's bf16 matmul reads the plain layout: nothing packed for [" << out << ", " << in << "]");
      continue;
    }
    CHECK(packed.out == out);
    CHECK(packed.in == in);
    const Tensor<float> bias = randn<float>({out}, gen);
    for (int64_t rows : {int64_t{1}, int64_t{35}, int64_t{600}}) {
      INFO("[" << rows << ", " << in << "] x [" << out << ", " << in << "]^T");
      const Tensor<float> x = randn<float>({rows, in}, gen);
      std::vector<bf16> x16(static_cast<size_t>(rows * in));
      backend::Kernels<Cpu>::to_bf16(x.data(), x16.data(), rows * in);
      std::vector<float> plain(static_cast<size_t>(rows * out)), blocked(plain.size());
      backend::Kernels<Cpu>::linear_bf16(x16.data(), rows, in, w16.data(), out, bias.data(), plain.data());
      backend::Kernels<Cpu>::linear_bf16_packed(x16.data(), rows, in, packed, out, bias.data(), blocked.data());
      double worst = 0, scale = 0;
      for (size_t i = 0; i < plain.size(); ++i) {
        worst = std::max(worst, std::abs(double(plain[i]) - double(blocked[i])));
        scale = std::max(scale, std::abs(double(plain[i])));
      }
      CHECK(worst <= 1e-6 * scale);  // the same bf16 operands, float accumulation: only the order may differ
    }
    std::vector<float> y(static_cast<size_t>(out));
    CHECK_THROWS_WITH(backend::Kernels<Cpu>::linear_bf16_packed(w16.data(), 1, in + 1, packed, out, nullptr, y.data()),
                      Catch::Contains("the call needs [" + std::to_string(out) + ", " + std::to_string(in + 1) + "]"));
  }
}

TEST_CASE("backend ops: a fixed-weight bf16 scope packs each weight once and never under autocast") {
  const auto count_packs = [](PrecisionScope& scope, const std::vector<Tensor<float>>& ws, int uses) {
    int packs = 0;
    for (int u = 0; u < uses; ++u)
      for (const auto& w : ws)
        (void)scope.packed_weight(w, PrecisionScope::Packing::bf16, [&](const Tensor<float>& wc) {
          ++packs;
          std::vector<bf16> w16(static_cast<size_t>(wc.numel()));
          backend::Kernels<Cpu>::to_bf16(wc.data(), w16.data(), wc.numel());
          return backend::Kernels<Cpu>::pack_linear_bf16(w16.data(), wc.size(0), wc.size(1));
        });
    return packs;
  };
  Generator gen(43);
  std::vector<Tensor<float>> ws{randn<float>({64, 32}, gen), randn<float>({32, 64}, gen)};
  {
    PrecisionScope fixed(Precision::bf16);
    CHECK(count_packs(fixed, ws, 3) == 2);
    ws[0] = randn<float>({64, 32}, gen);  // a new weight (its memory may be the old one's): packed anew
    CHECK(count_packs(fixed, ws, 2) == 1);
  }
  PrecisionScope changing(Precision::bf16, PrecisionScope::Weights::changing);
  CHECK(count_packs(changing, ws, 2) == 0);
  {
    // Scopes given one WeightCache share its conversions, and a freed weight's entry is dropped
    // when the next one is made.
    const auto cache = std::make_shared<PrecisionScope::WeightCache>(Precision::bf16);
    {
      PrecisionScope first(Precision::bf16, PrecisionScope::Weights::fixed, cache);
      CHECK(count_packs(first, ws, 1) == 2);
    }
    PrecisionScope second(Precision::bf16, PrecisionScope::Weights::fixed, cache);
    CHECK(count_packs(second, ws, 2) == 0);
    CHECK(cache->size() == 2);
    for (int i = 0; i < 5; ++i) {
      const std::vector<Tensor<float>> temporary{randn<float>({16, 8}, gen)};
      CHECK(count_packs(second, temporary, 1) == 1);
    }
    CHECK(cache->size() == 3);  // the two kept weights and the last temporary one
  }
  // linear() under the fixed scope without gradients goes through the packed weight and agrees
  // with the recorded (plain-weight) path.
  const Tensor<float> x = randn<float>({35, 32}, gen);
  PrecisionScope fixed(Precision::bf16);
  Tensor<float> packed_y;
  {
    NoGradGuard no_grad;
    packed_y = linear(x, ws[0]);
  }
  Tensor<float> xr = clone(x);
  xr.set_requires_grad(true);
  const Tensor<float> plain_y = linear(xr, ws[0]);
  const std::vector<float> a = packed_y.to_vector(), b = plain_y.detach().to_vector();
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(double(a[i]) - double(b[i])));
  CHECK(worst <= 1e-5);
}

TEST_CASE("backend ops: per-row int8 quantisation, the same on every ISA path, and the int8 product") {
  const int64_t rows = 5, cols = 37;  // 37: two full AVX-512 vectors and a masked tail
  Generator gen(47);
  std::vector<float> x = randn<float>({rows, cols}, gen).to_vector();
  std::fill_n(x.begin() + cols, cols, 0.0f);  // a zero row: scale 1, all q 0
  const float halves[] = {127.0f, 0.5f, 1.5f, 2.5f, -0.5f, -2.5f, -127.0f};  // max 127: x / scale = x exactly
  std::copy(std::begin(halves), std::end(halves), x.begin() + 2 * cols);
  std::fill(x.begin() + 2 * cols + 7, x.begin() + 3 * cols, 0.25f);
  const cpu::Isa initial = cpu::active_isa();
  std::vector<int8_t> q_portable(x.size());
  std::vector<float> s_portable(rows);
  cpu::set_isa(cpu::Isa::portable);
  backend::Kernels<Cpu>::quantize_rows_s8(x.data(), q_portable.data(), s_portable.data(), rows, cols);
  CHECK(s_portable[1] == 1.0f);
  CHECK(std::all_of(q_portable.begin() + cols, q_portable.begin() + 2 * cols, [](int8_t v) { return v == 0; }));
  const std::vector<int> expected{127, 0, 2, 2, 0, -2, -127};  // round half to even
  for (size_t i = 0; i < expected.size(); ++i) CHECK(int(q_portable[2 * cols + i]) == expected[i]);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      const size_t i = static_cast<size_t>(r * cols + j);
      CHECK(std::abs(x[i] - s_portable[r] * q_portable[i]) <= 0.5f * s_portable[r] * 1.0001f);
    }
  for (cpu::Isa isa : {cpu::Isa::avx2, cpu::Isa::avx512}) {
    if (static_cast<int>(isa) > static_cast<int>(cpu::detected_isa())) continue;
    INFO("isa " << cpu::isa_name(isa));
    cpu::set_isa(isa);
    std::vector<int8_t> q(x.size());
    std::vector<float> s(rows);
    backend::Kernels<Cpu>::quantize_rows_s8(x.data(), q.data(), s.data(), rows, cols);
    CHECK(q == q_portable);
    CHECK(s == s_portable);
  }
  // The int8 product: int32 accumulation is exact, so y matches the float64 sum of the quantised
  // operands times their scales, on every ISA path of the dequantisation.
  const int64_t out = 70;
  const Tensor<float> w = randn<float>({out, cols}, gen);
  const Tensor<float> bias = randn<float>({out}, gen);
  const backend::PackedWeight packed = backend::Kernels<Cpu>::pack_linear_s8(w.data(), out, cols);
  if (!packed) {  // no VNNI in oneDNN's ISA (an AVX2 CPU, or ONEDNN_MAX_CPU_ISA=AVX2)
    CHECK_FALSE(cpu::detail::int8_products_exact());
    WARN("oneDNN has no exact int8 product here: int8 linear layers fall back to bf16");
    cpu::set_isa(initial);
    return;
  }
  std::vector<int8_t> wq(static_cast<size_t>(out * cols));
  std::vector<float> ws(static_cast<size_t>(out));
  cpu::set_isa(cpu::Isa::portable);
  backend::Kernels<Cpu>::quantize_rows_s8(w.data(), wq.data(), ws.data(), out, cols);
  // Row counts around the 512-row probe that chose the packed layout.
  for (int64_t m : {int64_t{1}, int64_t{35}, int64_t{600}}) {
    std::vector<int8_t> xq(static_cast<size_t>(m * cols));
    std::vector<float> xs(static_cast<size_t>(m));
    backend::Kernels<Cpu>::quantize_rows_s8(randn<float>({m, cols}, gen).data(), xq.data(), xs.data(), m, cols);
    for (cpu::Isa isa : {cpu::Isa::portable, cpu::Isa::avx2, cpu::Isa::avx512}) {
      if (static_cast<int>(isa) > static_cast<int>(cpu::detected_isa())) continue;
      INFO("isa " << cpu::isa_name(isa) << ", " << m << " rows");
      cpu::set_isa(isa);
      std::vector<float> y(static_cast<size_t>(m * out));
      backend::Kernels<Cpu>::linear_s8_packed(xq.data(), xs.data(), m, cols, packed, out, bias.data(), y.data());
      double worst = 0;
      for (int64_t r = 0; r < m; ++r)
        for (int64_t o = 0; o < out; ++o) {
          int64_t acc = 0;
          for (int64_t j = 0; j < cols; ++j) acc += int64_t{xq[r * cols + j]} * wq[o * cols + j];
          const double ref = double(acc) * xs[r] * ws[o] + bias.data()[o];
          worst = std::max(worst, std::abs(ref - y[r * out + o]) / std::max(1.0, std::abs(ref)));
        }
      CHECK(worst <= 1e-5);
    }
    cpu::set_isa(cpu::Isa::portable);
  }
  // A row with NaN or Inf: scale NaN, q 0 on every path, and its products NaN (as in fp32).
  std::vector<float> bad(static_cast<size_t>(2 * cols), 0.5f);
  bad[3] = std::numeric_limits<float>::quiet_NaN();
  bad[cols + 20] = -std::numeric_limits<float>::infinity();
  for (cpu::Isa isa : {cpu::Isa::portable, cpu::Isa::avx2, cpu::Isa::avx512}) {
    if (static_cast<int>(isa) > static_cast<int>(cpu::detected_isa())) continue;
    INFO("isa " << cpu::isa_name(isa));
    cpu::set_isa(isa);
    std::vector<int8_t> q(bad.size(), 1);
    std::vector<float> s(2);
    backend::Kernels<Cpu>::quantize_rows_s8(bad.data(), q.data(), s.data(), 2, cols);
    CHECK(std::isnan(s[0]));
    CHECK(std::isnan(s[1]));
    CHECK(std::all_of(q.begin(), q.end(), [](int8_t v) { return v == 0; }));
    std::vector<float> y(static_cast<size_t>(2 * out));
    backend::Kernels<Cpu>::linear_s8_packed(q.data(), s.data(), 2, cols, packed, out, bias.data(), y.data());
    CHECK(std::all_of(y.begin(), y.end(), [](float v) { return std::isnan(v); }));
  }
  cpu::set_isa(initial);
  std::vector<float> y(static_cast<size_t>(out));
  CHECK_THROWS_WITH(backend::Kernels<Cpu>::linear_s8_packed(q_portable.data(), s_portable.data(), 1, cols + 1, packed,
                                                            out, nullptr, y.data()),
                    Catch::Contains("linear_s8_packed"));
  // A bf16-packed weight is refused by the int8 product (and the other way round), naming both.
  std::vector<bf16> w16(static_cast<size_t>(out * cols));
  backend::Kernels<Cpu>::to_bf16(w.data(), w16.data(), out * cols);
  if (const backend::PackedWeight packed16 = backend::Kernels<Cpu>::pack_linear_bf16(w16.data(), out, cols)) {
    CHECK_THROWS_WITH(backend::Kernels<Cpu>::linear_s8_packed(q_portable.data(), s_portable.data(), 1, cols, packed16,
                                                              out, nullptr, y.data()),
                      Catch::Contains("packed for a bf16 matmul, not a s8 matmul"));
  }
}

TEST_CASE("backend ops: an int8 scope runs linear() in int8 without gradients and in bf16 with them") {
  Generator gen(53);
  const Tensor<float> w = randn<float>({48, 64}, gen), b = randn<float>({48}, gen);
  Tensor<float> x = randn<float>({35, 64}, gen);
  Tensor<float> ref, int8_y, bf16_y;
  {
    NoGradGuard no_grad;
    ref = linear(x, w, b);
    const PrecisionScope int8(Precision::int8);
    int8_y = linear(x, w, b);
  }
  x.set_requires_grad(true);
  {
    const PrecisionScope int8(Precision::int8);
    bf16_y = linear(x, w, b);  // a gradient is recorded: the bf16 path, whose backward exists
  }
  sum(bf16_y).backward();
  CHECK(x.grad().defined());
  const auto rel = [&](const Tensor<float>& y) { return max_rel_error(y, ref); };
  CHECK(rel(int8_y) < 3e-2);
  CHECK(rel(bf16_y) < 1e-2);
  if (cpu::detail::int8_products_exact())
    CHECK(rel(int8_y) != rel(bf16_y));  // the two paths differ: the int8 one really ran
  else
    CHECK(rel(int8_y) == rel(bf16_y));  // no VNNI: the int8 scope took the bf16 path
  CHECK(parse_precision("int8") == Precision::int8);
  CHECK_THROWS_WITH(parse_precision("int4"), Catch::Contains("fp32, bf16, int8"));
}

TEST_CASE("backend ops: the fp16 products (AVX512-FP16): linear, gemm_f16, scaling, the float fallback, the scope") {
  Generator gen(59);
  const cpu::Isa initial = cpu::active_isa();
  if (static_cast<int>(cpu::detected_isa()) >= static_cast<int>(cpu::Isa::avx2)) {  // a narrower ISA turns it off
    cpu::set_isa(cpu::Isa::avx2);
    CHECK_FALSE(cpu::f16_products_available());
    const Tensor<float> w = randn<float>({32, 16}, gen);
    CHECK_FALSE(backend::Kernels<Cpu>::pack_linear_f16(w.data(), 32, 16));
    cpu::set_isa(initial);
  }
  if (!cpu::f16_products_available()) {
    WARN("no AVX512-FP16 on this CPU (or not built by GCC >= 12): fp16 scopes take the bf16 path; kernel checks skipped");
    return;
  }
  // Shapes with every edge: rows not a multiple of the 12-row tile (1, 8, 9 and 11 left over), odd K
  // (a zero-padded pair), columns not a multiple of the 32-column panel (a last panel of 3, 13, 16
  // and 24 columns), K past one 128-wide fp16 run, one row; and BLIP's: K = 768 over two row chunks
  // (577 rows), K = 3072 over several.
  struct Shape3 { int64_t rows, in, out; };
  for (const Shape3 sh : {Shape3{1, 7, 3}, Shape3{35, 64, 48}, Shape3{37, 101, 45}, Shape3{9, 300, 56},
                          Shape3{600, 96, 64}, Shape3{577, 768, 64}, Shape3{200, 3072, 40}}) {
    INFO(sh.rows << " x " << sh.in << " -> " << sh.out);
    const Tensor<float> x = randn<float>({sh.rows, sh.in}, gen), w = randn<float>({sh.out, sh.in}, gen, 0.0, 0.05);
    const Tensor<float> b = randn<float>({sh.out}, gen, 0.0, 0.1);
    const backend::PackedWeight packed = backend::Kernels<Cpu>::pack_linear_f16(w.data(), sh.out, sh.in);
    REQUIRE(packed);
    for (bool with_bias : {true, false}) {
      INFO("bias " << with_bias);
      constexpr int64_t guard = 40;  // sentinels after the output: nothing may be written there
      std::vector<float> y(static_cast<size_t>(sh.rows * sh.out + guard), -7.0f);
      backend::Kernels<Cpu>::linear_f16_packed(x.data(), sh.rows, sh.in, packed, w.data(), sh.out,
                                               with_bias ? b.data() : nullptr, y.data());
      CHECK(std::all_of(y.end() - guard, y.end(), [](float v) { return v == -7.0f; }));
      double worst = 0, scale = 0;
      for (int64_t r = 0; r < sh.rows; ++r)
        for (int64_t o = 0; o < sh.out; ++o) {
          double dot = 0;
          for (int64_t k = 0; k < sh.in; ++k) dot += double(x.data()[r * sh.in + k]) * w.data()[o * sh.in + k];
          const double ref = dot + (with_bias ? b.data()[o] : 0.0);
          worst = std::max(worst, std::abs(ref - y[static_cast<size_t>(r * sh.out + o)]));
          scale = std::max(scale, std::abs(dot));
        }
      CHECK(worst <= 3e-3 * scale);  // fp16 operands (2^-11) and runs of 64 fp16 sums; bf16's bound is 3e-2
      CHECK(worst > 2e-5 * scale);   // it did round to fp16: a float product is ~1e-7 off here
    }
  }
  // gemm_f16, the training products: each operand transposed or not (and as stored by a view),
  // row strides past the width, a bias, every tile/panel edge, K past several runs (the weight
  // gradient's K is the row count), magnitudes fp16 could not hold unscaled.
  struct Gemm { int64_t m, n, k; };
  for (const Gemm g : {Gemm{1, 1, 1}, Gemm{1, 7, 3}, Gemm{13, 45, 101}, Gemm{23, 56, 17}, Gemm{30, 90, 64},
                       Gemm{37, 33, 300}, Gemm{25, 70, 1157}}) {
    for (int trans = 0; trans < 4; ++trans) {
      for (const double mag : {1.0, 1e-6, 3e3}) {
        const bool ta = trans & 1, tb = trans & 2;
        INFO(g.m << " x " << g.n << " x " << g.k << ", trans_a " << ta << ", trans_b " << tb << ", |a| ~ " << mag);
        const int64_t lda = (ta ? g.m : g.k) + 3, ldb = (tb ? g.k : g.n) + 5, ldc = g.n + 2;
        Tensor<float> a = randn<float>({ta ? g.k : g.m, lda}, gen, 0.0, mag);
        Tensor<float> b = randn<float>({tb ? g.n : g.k, ldb}, gen, 0.0, 0.05 * mag);
        // NaN past each row's width: a read there would send the product to float (caught below)
        const auto pad = [](Tensor<float>& x, int64_t width) {
          for (int64_t r = 0; r < x.size(0); ++r)
            for (int64_t j = width; j < x.size(1); ++j) x.data()[r * x.size(1) + j] = std::numeric_limits<float>::quiet_NaN();
        };
        pad(a, ta ? g.m : g.k);
        pad(b, tb ? g.k : g.n);
        const Tensor<float> bias = randn<float>({g.n}, gen, 0.0, 0.1 * mag * mag);
        constexpr int64_t guard = 40;
        std::vector<float> c(static_cast<size_t>((g.m - 1) * ldc + g.n + guard), -7.0f);
        backend::Kernels<Cpu>::gemm_f16(ta, tb, g.m, g.n, g.k, a.data(), lda, b.data(), ldb, bias.data(), c.data(), ldc);
        CHECK(std::all_of(c.end() - guard, c.end(), [](float v) { return v == -7.0f; }));
        bool gaps_kept = true;  // the ldc - n entries between rows are not written
        for (int64_t i = 0; i + 1 < g.m; ++i)
          for (int64_t j = g.n; j < ldc; ++j) gaps_kept = gaps_kept && c[static_cast<size_t>(i * ldc + j)] == -7.0f;
        CHECK(gaps_kept);
        double worst = 0, scale = 0;
        for (int64_t i = 0; i < g.m; ++i)
          for (int64_t j = 0; j < g.n; ++j) {
            double dot = 0;
            for (int64_t q = 0; q < g.k; ++q)
              dot += double(a.data()[ta ? q * lda + i : i * lda + q]) * b.data()[tb ? j * ldb + q : q * ldb + j];
            worst = std::max(worst, std::abs(dot + bias.data()[j] - c[static_cast<size_t>(i * ldc + j)]));
            scale = std::max(scale, std::abs(dot) + std::abs(bias.data()[j]));
          }
        CHECK(worst <= 3e-3 * scale);
        if (g.k > 1) CHECK(worst > 2e-6 * scale);  // rounded to fp16
      }
    }
  }
  {  // a NaN in an operand: the product is computed in float
    std::vector<float> a(4 * 8, 1.0f), b(8 * 3, 1.0f), c(4 * 3);
    a[9] = std::numeric_limits<float>::quiet_NaN();
    a[0] = 1.0f + 0x1.0p-13f;  // not an fp16 value: the float product keeps it
    backend::Kernels<Cpu>::gemm_f16(false, false, 4, 3, 8, a.data(), 8, b.data(), 3, nullptr, c.data(), 3);
    CHECK(std::isnan(c[3]));
    CHECK(c[0] == 8.0f + 0x1.0p-13f);
  }
  // Every row of x and column of w is scaled by a power of two before rounding: values whose
  // products or runs would overflow fp16 (or fall into its subnormals) keep fp16's 11 bits.
  const int64_t in = 64, out = 32;
  const auto check_scaled = [&](double x_mag, double w_mag) {
    INFO("|x| ~ " << x_mag << ", |w| ~ " << w_mag);
    const Tensor<float> xs = randn<float>({5, 300}, gen, 0.0, x_mag), ws = randn<float>({out, 300}, gen, 0.0, w_mag);
    const backend::PackedWeight pw = backend::Kernels<Cpu>::pack_linear_f16(ws.data(), out, 300);
    REQUIRE(pw);
    std::vector<float> ys(static_cast<size_t>(5 * out));
    backend::Kernels<Cpu>::linear_f16_packed(xs.data(), 5, 300, pw, ws.data(), out, nullptr, ys.data());
    double worst = 0, scale = 0;
    for (int64_t r = 0; r < 5; ++r)
      for (int64_t o = 0; o < out; ++o) {
        double dot = 0;
        for (int64_t k = 0; k < 300; ++k) dot += double(xs.data()[r * 300 + k]) * ws.data()[o * 300 + k];
        worst = std::max(worst, std::abs(dot - ys[static_cast<size_t>(r * out + o)]));
        scale = std::max(scale, std::abs(dot));
      }
    CHECK(worst <= 3e-3 * scale);
    CHECK(worst > 2e-5 * scale);  // fp16 ran (a float product is ~1e-7 off)
  };
  check_scaled(1e4, 10.0);   // products ~1e5: beyond fp16's 65504 unscaled
  check_scaled(1e-5, 1e-4);  // products ~1e-9: below fp16's smallest subnormal (6e-8) unscaled
  check_scaled(1.0, 1e5);    // a weight beyond fp16's range is packed (scaled) too
  check_scaled(1e18, 1e-18);  // exponents far apart: each at its scale's limit, the result ~1
  // Products of 3000 whose unscaled sums (lanes of 32, 96000; the row 192000) are far beyond fp16:
  // within 3e-3.
  std::vector<float> w(static_cast<size_t>(out * in), 1.0f), x(static_cast<size_t>(2 * in), 3000.0f), y(2 * out);
  const backend::PackedWeight packed = backend::Kernels<Cpu>::pack_linear_f16(w.data(), out, in);
  REQUIRE(packed);
  x[5] = 3000.5f;  // not an fp16 value at this scale: the fp16 result differs from the float one
  backend::Kernels<Cpu>::linear_f16_packed(x.data(), 2, in, packed, w.data(), out, nullptr, y.data());
  const float exact = 3000.0f * 63 + 3000.5f;
  CHECK(std::abs(y[0] - exact) <= 3e-3 * exact);
  CHECK(y[0] != exact);
  // A NaN in x: the layer is computed in float (NaN where the float product has one, exact elsewhere).
  x[in + 1] = std::numeric_limits<float>::quiet_NaN();
  backend::Kernels<Cpu>::linear_f16_packed(x.data(), 2, in, packed, w.data(), out, nullptr, y.data());
  CHECK(std::isnan(y[out]));
  CHECK(y[0] == exact);
  // A weight with a non-finite value is not packed (the scope then takes the float/bf16 path).
  w[7] = std::numeric_limits<float>::infinity();
  CHECK_FALSE(backend::Kernels<Cpu>::pack_linear_f16(w.data(), out, in));
  CHECK_THROWS_WITH(backend::Kernels<Cpu>::linear_f16_packed(x.data(), 1, in + 2, packed, w.data(), out, nullptr, y.data()),
                    Catch::Contains("linear_f16_packed"));
  // The scope: fp16 with fixed weights (packed) and in training autocast with a gradient, whose
  // backward multiplies in fp16 too.
  const Tensor<float> wt = randn<float>({48, 64}, gen, 0.0, 0.1), bt = randn<float>({48}, gen);
  Tensor<float> xt = randn<float>({35, 64}, gen);
  Tensor<float> ref, fp16_y, bf16_y, grad_y;
  {
    NoGradGuard no_grad;
    ref = linear(xt, wt, bt);
    {
      const PrecisionScope fp16(Precision::fp16);
      fp16_y = linear(xt, wt, bt);
    }
    const PrecisionScope bf16(Precision::bf16);
    bf16_y = linear(xt, wt, bt);
  }
  const Tensor<float> gy = randn<float>({35, 48}, gen, 0.0, 1e-5);  // gradients below fp16's smallest normal (6e-5)
  Tensor<float> wg = clone(wt);
  wg.set_requires_grad(true);
  xt.set_requires_grad(true);
  {
    const PrecisionScope fp16(Precision::fp16, PrecisionScope::Weights::changing);
    grad_y = linear(xt, wg, bt);
  }
  sum(mul(grad_y, gy)).backward();
  const Tensor<float> gx16 = clone(xt.grad()), gw16 = clone(wg.grad());
  xt.zero_grad();
  wg.zero_grad();
  sum(mul(linear(xt, wg, bt), gy)).backward();  // float
  const auto rel = [&](const Tensor<float>& y) { return max_rel_error(y, ref); };
  CHECK(rel(fp16_y) < 3e-3);
  CHECK(rel(fp16_y) > 0);
  CHECK(rel(grad_y) < 3e-3);
  CHECK(rel(grad_y) > 0);
  CHECK(max_rel_error(gx16, xt.grad()) < 3e-3);
  CHECK(max_rel_error(gx16, xt.grad()) > 0);
  CHECK(max_rel_error(gw16, wg.grad()) < 3e-3);
  CHECK(max_rel_error(gw16, wg.grad()) > 0);
  CHECK(rel(bf16_y) < 3e-2);
  CHECK(parse_precision("fp16") == Precision::fp16);
  CHECK(std::string(precision_name(Precision::fp16)) == "fp16");
}

TEST_CASE("backend ops: fp16 outputs of 2 MiB or more are streamed past the caches, with the same values") {
  if (!cpu::f16_products_available()) {
    WARN("no AVX512-FP16 on this CPU (or not built by GCC >= 12): nothing to stream");
    return;
  }
  Generator gen(61);
  // 1030 x 528 floats = 2.07 MiB: streamed where y's rows start on 64-byte lines (a tensor; 528 a
  // multiple of 16), with ordinary stores where they do not (y one float past a line); the last
  // panel (16 columns: ordinary stores in both) and the last tile (10 rows) are partial.
  const int64_t rows = 1030, in = 96, out = 528;
  const Tensor<float> x = randn<float>({rows, in}, gen), w = randn<float>({out, in}, gen, 0.0, 0.05);
  const Tensor<float> b = randn<float>({out}, gen, 0.0, 0.1);
  const backend::PackedWeight packed = backend::Kernels<Cpu>::pack_linear_f16(w.data(), out, in);
  REQUIRE(packed);
  Tensor<float> streamed = Tensor<float>::empty({rows, out});
  REQUIRE(reinterpret_cast<uintptr_t>(streamed.data()) % 64 == 0);
  backend::Kernels<Cpu>::linear_f16_packed(x.data(), rows, in, packed, w.data(), out, b.data(), streamed.data());
  constexpr int64_t guard = 40;
  std::vector<float> plain(static_cast<size_t>(rows * out + 16 + guard), -7.0f);
  float* y = plain.data() + 1;
  while (reinterpret_cast<uintptr_t>(y) % 64 == 0) ++y;  // rows off the lines: not streamed
  backend::Kernels<Cpu>::linear_f16_packed(x.data(), rows, in, packed, w.data(), out, b.data(), y);
  CHECK(std::all_of(y + rows * out, y + rows * out + guard, [](float v) { return v == -7.0f; }));
  CHECK(std::equal(y, y + rows * out, streamed.data()));
  double worst = 0, scale = 0;
  for (int64_t r = 0; r < rows; r += 7)
    for (int64_t o = 0; o < out; ++o) {
      double dot = 0;
      for (int64_t k = 0; k < in; ++k) dot += double(x.data()[r * in + k]) * w.data()[o * in + k];
      worst = std::max(worst, std::abs(dot + b.data()[o] - streamed.data()[r * out + o]));
      scale = std::max(scale, std::abs(dot));
    }
  CHECK(worst <= 3e-3 * scale);
  CHECK(worst > 2e-5 * scale);
  // gemm_f16 (training): a streamed output with a row stride past its width (ldc a multiple of 16)
  // leaves the gaps between rows untouched.
  const int64_t m = 720, n = 740, k = 50, ldc = 752;  // 2.03 MiB
  const Tensor<float> a = randn<float>({m, k}, gen), bm = randn<float>({k, n}, gen, 0.0, 0.1);
  Tensor<float> c = Tensor<float>::empty({m, ldc});
  std::fill(c.data(), c.data() + m * ldc, -7.0f);
  backend::Kernels<Cpu>::gemm_f16(false, false, m, n, k, a.data(), k, bm.data(), n, nullptr, c.data(), ldc);
  bool gaps_kept = true;
  double worst_c = 0, scale_c = 0;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = n; j < ldc; ++j) gaps_kept = gaps_kept && c.data()[i * ldc + j] == -7.0f;
    if (i % 5 == 0)
      for (int64_t j = 0; j < n; ++j) {
        double dot = 0;
        for (int64_t q = 0; q < k; ++q) dot += double(a.data()[i * k + q]) * bm.data()[q * n + j];
        worst_c = std::max(worst_c, std::abs(dot - c.data()[i * ldc + j]));
        scale_c = std::max(scale_c, std::abs(dot));
      }
  }
  CHECK(gaps_kept);
  CHECK(worst_c <= 3e-3 * scale_c);
}
