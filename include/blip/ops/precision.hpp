// blip/ops/precision.hpp — reduced-precision inference: PrecisionScope.
//
// Contract:
// - While a PrecisionScope(Precision::bf16) lives on a thread, linear() and the fused
//   feed-forward on that thread (float tensors) multiply in bf16 with float accumulation, forward
//   and (where a gradient is recorded) backward: operands are rounded to bf16, products
//   accumulate in float. Attention's two inner products (q·kᵀ, p·v) run in bf16 in the
//   forward; its softmax, output and backward stay float. Bias, layer norm, softmax, residuals,
//   L2 normalisation, the heads' reductions, the parameters and the optimiser state stay float.
//   Scopes nest; the innermost decides. The backward of linear and the feed-forward follows
//   what the forward chose, whatever scope is active when backward() runs.
// - Weights::fixed (inference: extract_feat, score matrices, index, search, eval): each weight
//   is converted once per scope (a cache the scope owns and frees, or a WeightCache it is given
//   and shares with other scopes); the weights must not change while the scope (or the shared
//   cache) lives. Where no gradient is recorded, linear() reads the weight in the
//   layout the device's GEMM prefers (packed once per scope, backend::PackedWeight). A weight tensor that is freed and whose memory is reused is
//   recognised (the cache holds the storage's owner, not only its address).
// - Weights::changing (training autocast, like torch.autocast): weights are converted on every
//   use, so optimiser steps and momentum updates are always seen.
// - Precision::int8 (inference): linear() without a recorded gradient multiplies int8 by int8
//   with int32 accumulation — each weight quantised once per scope with one scale per output
//   channel (max |w_j| / 127) and packed, the activations quantised per call with one scale per
//   row (token). Everything else is as in bf16: attention's products, and linear() where a
//   gradient is recorded or under Weights::changing (there is no int8 training).
// - Precision::fp16 (CPUs with AVX512-FP16): linear() and the fused feed-forward multiply fp16 by
//   fp16, adding runs of at most 64 products in fp16 and the runs in float, each row and column
//   scaled by a power of two so nothing overflows (backend/cpu/half_gemm.hpp). Without a recorded
//   gradient and with Weights::fixed each weight is rounded and packed once per scope, the
//   activations per call; under Weights::changing (training autocast) or with a recorded gradient
//   both operands are rounded per call, and the backward's products (gx = g · w, gw = gᵀ · x) are
//   fp16 too. Everything else is as in bf16 (attention's products, the reductions, the
//   optimiser). Where the device has no fp16 product (no AVX512-FP16, a CUDA device) linear()
//   takes the bf16 path.
// - Where bf16 products do not pay on the device (backend/cpu/bf16_products.hpp: an Intel CPU
//   without AMX runs them at half its float rate), the bf16 products above stay float: bf16 and
//   the non-int8 products of int8 then equal fp32. BLIP_CPU_BF16=on forces them.
// - Precision::fp32 is the default and the reference: outside any scope nothing changes.
// docs/performance.md states the measured accuracy (cosine to fp32 features, ITM logit error).
#pragma once

#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "blip/backend/args.hpp"
#include "blip/core/error.hpp"
#include "blip/core/tensor.hpp"
#include "blip/ops/dispatch.hpp"

namespace blip {

enum class Precision { fp32, bf16, int8, fp16 };

inline const char* precision_name(Precision p) {
  switch (p) {
    case Precision::bf16: return "bf16";
    case Precision::int8: return "int8";
    case Precision::fp16: return "fp16";
    default: return "fp32";
  }
}

inline Precision parse_precision(std::string_view name) {
  if (name == "fp32") return Precision::fp32;
  if (name == "bf16") return Precision::bf16;
  if (name == "int8") return Precision::int8;
  if (name == "fp16") return Precision::fp16;
  fail("precision: '", std::string(name), "' is not one of fp32, bf16, int8, fp16");
}

class PrecisionScope {
  static constexpr size_t kPackings = 3;
  // What was made of one weight: its plain bf16 copy and/or its packed forms, each on first use.
  template <Device D>
  struct Entry {
    std::weak_ptr<void> owner;
    Shape shape;
    Tensor<bf16, D> copy;
    std::array<backend::PackedWeight, kPackings> packed;
    std::array<bool, kPackings> pack_tried{};
  };

 public:
  enum class Weights { fixed, changing };
  // The packed forms a weight can have, each in its own slot: an int8 or fp16 scope whose packing
  // the device lacks still gets the bf16 path's packed weight.
  enum class Packing { bf16, s8, f16 };

  // The converted weights of Weights::fixed scopes. A scope makes its own unless it is given one:
  // then the conversions outlive the scope and serve every scope given the same cache, on any
  // thread (a Retriever's calls), under one lock. A cache holds one precision's forms.
  class WeightCache {
   public:
    explicit WeightCache(Precision precision) : precision_(precision) {}
    Precision precision() const { return precision_; }
    // Weights converted so far (each once, whatever the number of scopes that used them).
    size_t size() {
      const std::lock_guard<std::mutex> lock(mutex_);
      return cpu_.size() + cuda_.size();
    }

   private:
    friend class PrecisionScope;
    template <Device D>
    std::map<const float*, Entry<D>>& entries() {
      if constexpr (std::same_as<D, Cpu>) return cpu_;
      else return cuda_;
    }
    Precision precision_;
    std::mutex mutex_;
    std::map<const float*, Entry<Cpu>> cpu_;
    std::map<const float*, Entry<Cuda>> cuda_;
  };

  explicit PrecisionScope(Precision precision, Weights weights = Weights::fixed,
                          std::shared_ptr<WeightCache> cache = nullptr)
      : precision_(precision), weights_(weights),
        cache_(cache ? std::move(cache) : std::make_shared<WeightCache>(precision)), outer_(current_scope()) {
    BLIP_CHECK(cache_->precision() == precision, "PrecisionScope: a ", precision_name(precision),
               " scope was given the weight cache of ", precision_name(cache_->precision()));
    current_scope() = this;
  }
  ~PrecisionScope() { current_scope() = outer_; }
  PrecisionScope(const PrecisionScope&) = delete;
  PrecisionScope& operator=(const PrecisionScope&) = delete;

  Precision precision() const { return precision_; }

  // The innermost scope of this thread (null outside any).
  static PrecisionScope* active() { return current_scope(); }
  static Precision current() { return active() ? active()->precision_ : Precision::fp32; }

  // The bf16 copy of a weight, converted on first use in this scope (or its cache);
  // `convert(src, dst, n)` fills it (the device's to_bf16 kernel).
  template <Device D, class Convert>
  Tensor<bf16, D> bf16_weight(const Tensor<float, D>& w, Convert convert) {
    if (weights_ == Weights::changing) {
      Tensor<bf16, D> copy = Tensor<bf16, D>::empty(w.shape());
      convert(w.data(), copy.data(), w.numel());
      return copy;
    }
    const std::lock_guard<std::mutex> lock(cache_->mutex_);
    Entry<D>& e = entry(w);
    if (!e.copy.defined()) {
      e.copy = Tensor<bf16, D>::empty(w.shape());
      convert(w.data(), e.copy.data(), w.numel());
    }
    return e.copy;
  }

  // A linear weight [out, in] in the device's preferred form for `packing`, made once per cache by
  // `pack(w)` (which returns backend::PackedWeight: bf16 packed, int8 with its scales, or fp16
  // panels; each packing has its own slot); empty
  // with Weights::changing (it would be repacked on every use) or where the device has nothing
  // better than the plain layout. Only the packed form is kept, not also the plain copy:
  // BLIP-base's weights are 0.45 GB in bf16.
  template <Device D, class Pack>
  backend::PackedWeight packed_weight(const Tensor<float, D>& w, Packing packing, Pack pack) {
    if (weights_ == Weights::changing) return {};
    const std::lock_guard<std::mutex> lock(cache_->mutex_);
    Entry<D>& e = entry(w);
    const auto slot = static_cast<size_t>(packing);
    if (!e.pack_tried[slot]) {
      e.packed[slot] = pack(w);
      e.pack_tried[slot] = true;
    }
    return e.packed[slot];
  }

 private:
  // The entry of w (the cache's lock held), new where w's memory is not the one it was made for
  // (freed and reused). A new entry also drops those of freed weights, so a long-lived cache does
  // not keep them. Conversions run under the lock: a weight's first use holds up other threads
  // once.
  template <Device D>
  Entry<D>& entry(const Tensor<float, D>& w) {
    auto& cache = cache_->entries<D>();
    auto it = cache.find(w.data());
    if (it == cache.end() || !same_owner(it->second.owner, w.storage()) || it->second.shape != w.shape()) {
      std::erase_if(cache, [](const auto& kv) { return kv.second.owner.expired(); });  // freed weights' forms
      Entry<D> fresh;
      fresh.owner = std::static_pointer_cast<void>(w.storage());
      fresh.shape = w.shape();
      it = cache.insert_or_assign(w.data(), std::move(fresh)).first;
    }
    return it->second;
  }
  static bool same_owner(const std::weak_ptr<void>& a, const std::shared_ptr<float>& b) {
    return !a.expired() && !a.owner_before(b) && !b.owner_before(a);
  }
  static PrecisionScope*& current_scope() {
    thread_local PrecisionScope* scope = nullptr;
    return scope;
  }

  Precision precision_;
  Weights weights_;
  std::shared_ptr<WeightCache> cache_;
  PrecisionScope* outer_;
};

// Whether the current scope's products run in bf16 on device D: the scope asks for bf16 (or int8
// or fp16, whose other products are bf16) and bf16 products pay there (Kernels<D>::bf16_products_pay: on a
// CPU whose bf16 GEMM is slower than its float one they stay float, more exact and faster).
template <Device D>
bool bf16_products() {
  return PrecisionScope::current() != Precision::fp32 && kernels<D>::bf16_products_pay();
}

// What the current scope's linear layers (and the feed-forward's backward products) multiply in on
// device D: fp16 in an fp16 scope where the device has fp16 products, else bf16 where
// bf16_products<D>(), else float.
enum class Products { fp32, bf16, fp16 };
template <Device D>
Products scope_products() {
  if (PrecisionScope::current() == Precision::fp16 && kernels<D>::f16_products_available()) return Products::fp16;
  return bf16_products<D>() ? Products::bf16 : Products::fp32;
}

}  // namespace blip
