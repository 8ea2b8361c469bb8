// blip/train/blip_micro_loss.hpp — the Trainer's loss function for a BlipRetrieval model.
//
// Contract: blip_micro_loss(model, next_batch) returns a Trainer::MicroLoss that sets the ITC
// head's alpha for the step (the warm-up), draws next_batch() (any struct with images, texts,
// image_ids, on any device: they are moved to the model's) and returns the terms "itc_loss" and
// "itm_loss" of model.loss(), as mmpretrain's parse_losses sums them. Distributed, pass the Trainer's communicator: the loss then draws its
// negatives from, and fills the queues with, every rank's batch.
#pragma once

#include "blip/models/blip_retrieval.hpp"
#include "blip/models/host_io.hpp"
#include "blip/train/trainer.hpp"

namespace blip::train {

template <class Model, class NextBatch>
typename Trainer<typename Model::value_type, typename Model::device_type>::MicroLoss blip_micro_loss(
    Model& model, NextBatch next_batch, NegativeSampler sampler = {},
    dist::Communicator& comm = dist::single_process()) {
  using T = typename Model::value_type;
  using D = typename Model::device_type;
  return [&model, &comm, sampler = std::move(sampler), next_batch = std::move(next_batch)](const StepContext& ctx) mutable {
    model.set_alpha(ctx.alpha);
    const auto batch = next_batch();
    const auto losses = model.loss(upload<D>(batch.images), upload<D>(batch.texts), batch.image_ids, sampler, comm);
    return LossTerms<T, D>{{{"itc_loss", losses.itc_loss}, {"itm_loss", losses.itm_loss}}, batch.images.size(0)};
  };
}

}  // namespace blip::train
