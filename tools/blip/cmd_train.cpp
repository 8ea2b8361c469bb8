// blip train — trains a BLIP retrieval model (ITC with queue and momentum distillation + ITM
// with hard negatives) on Fashion-MNIST or a COCO / Flickr30k / JSONL dataset, with the
// reference's optimiser settings, a metrics log, periodic training-state checkpoints and
// --resume (see docs/cli.md).
#include <cstdio>
#include <filesystem>
#include <memory>

#include <blip/data/coco_retrieval.hpp>
#include <blip/data/flickr30k_retrieval.hpp>
#include <blip/data/image_text_loader.hpp>
#include <blip/data/jsonl_retrieval.hpp>
#include <blip/io/model_state.hpp>
#include <blip/io/safetensors.hpp>
#include <blip/io/safetensors_writer.hpp>
#include <blip/io/state_dict.hpp>
#include <blip/io/training_state.hpp>
#include <blip/pretrained/self_describing.hpp>
#include <blip/train/blip_micro_loss.hpp>
#include <blip/train/fashion_mnist_task.hpp>
#include <blip/train/train_loop.hpp>

#include "commands.hpp"
#include "model_setup.hpp"

namespace {


struct TrainOptions {
  std::string dataset = "fashion-mnist", data = "/usr/share/datasets/fashion-mnist", ann, images, split = "train";
  std::string preset, checkpoint, config, vocab, out = "blip-train", resume;
  int64_t epochs = 6, steps = 0, stop_after = 0, batch = 32, accumulation = 1, warmup_steps = 0, log_every = 10, save_every = 0;
  double lr = 2e-5, weight_decay = 0.04, alpha_warmup_epochs = 2;
  uint64_t seed = 42;
  int workers = -1;
};

// A resumable stream of training batches: the Fashion-MNIST sampler or the image-text loader.
struct BatchStream {
  std::function<blip::train::TrainBatch<float, blip::Cpu>()> next;
  std::function<blip::io::TrainingProgress()> position;  // epoch and batch of the next batch
  std::function<void(int64_t epoch, int64_t batch_in_epoch)> seek;
  int64_t batches_per_epoch = 0;
  std::shared_ptr<void> keep_alive;
};

BatchStream fashion_mnist_stream(const TrainOptions& o, const blip::text::BertTokenizer& tokenizer,
                                 const blip::dist::Communicator& comm) {
  struct State {
    blip::data::FashionMnist fm;
    std::unique_ptr<blip::train::FashionMnistBatches<float, blip::Cpu>> batches;
  };
  auto s = std::make_shared<State>();
  s->fm = blip::data::load_fashion_mnist(o.data);
  s->batches = std::make_unique<blip::train::FashionMnistBatches<float, blip::Cpu>>(s->fm.train, tokenizer, o.batch, o.seed,
                                                                                     comm.rank(), comm.size());
  BatchStream out;
  out.next = [s] { return s->batches->next(); };
  out.position = [s] {
    return blip::io::TrainingProgress{0, s->batches->epoch(), s->batches->batch_in_epoch()};
  };
  out.seek = [s](int64_t e, int64_t b) { s->batches->seek(e, b); };
  out.batches_per_epoch = s->batches->batches_per_epoch();
  out.keep_alive = s;
  return out;
}

BatchStream loader_stream(const TrainOptions& o, const blip::BlipConfig& config, const blip::text::BertTokenizer& tokenizer,
                          const blip::dist::Communicator& comm) {
  BLIP_CHECK(!o.ann.empty() && !o.images.empty(), "--dataset ", o.dataset, " needs --ann FILE and --images DIR");
  BLIP_CHECK(std::filesystem::is_directory(o.images), "--images '", o.images, "' is not a directory");
  blip::data::RetrievalAnnotations ann;
  if (o.dataset == "coco") ann = blip::data::load_coco_retrieval(o.ann, o.images);
  else if (o.dataset == "flickr30k") ann = blip::data::load_flickr30k_retrieval(o.ann, o.images, o.split);
  else ann = blip::data::load_jsonl_retrieval(o.ann, o.images);
  blip::data::TrainPipeline pipeline;
  pipeline.augment.crop.size = config.vision.img_size;
  pipeline.mean = config.mean;
  pipeline.std = config.std;
  struct State {
    std::unique_ptr<blip::data::TrainLoader> loader;
    const blip::text::BertTokenizer* tokenizer;
    int64_t batch_in_epoch = 0;
  };
  auto s = std::make_shared<State>();
  s->loader = blip::data::make_train_loader(
      ann, pipeline,
      {.batch_size = o.batch, .shuffle = true, .drop_last = true, .seed = o.seed, .workers = o.workers,
       .rank = comm.rank(), .world = comm.size()});
  s->tokenizer = &tokenizer;
  BLIP_CHECK(s->loader->num_batches() > 0, "'", o.ann, "' has ", s->loader->size(), " captions, fewer than one batch of ",
             o.batch);
  BatchStream out;
  out.next = [s] {
    auto batch = s->loader->next();
    if (!batch) {
      s->loader->start_epoch(s->loader->epoch() + 1);
      s->batch_in_epoch = 0;
      batch = s->loader->next();
    }
    ++s->batch_in_epoch;
    const auto encoded = s->tokenizer->encode_batch<blip::Cpu>(batch->texts);
    return blip::train::TrainBatch<float, blip::Cpu>{batch->images, {encoded.input_ids, encoded.attention_mask},
                                                     batch->image_ids};
  };
  out.position = [s] {
    if (s->batch_in_epoch == s->loader->num_batches()) return blip::io::TrainingProgress{0, s->loader->epoch() + 1, 0};
    return blip::io::TrainingProgress{0, s->loader->epoch(), s->batch_in_epoch};
  };
  out.seek = [s](int64_t e, int64_t b) {
    s->loader->start_epoch(e);
    for (s->batch_in_epoch = 0; s->batch_in_epoch < b; ++s->batch_in_epoch)  // the loader has no random access
      BLIP_CHECK(s->loader->next(), "--resume: epoch ", e, " has fewer than ", b, " batches");
  };
  out.batches_per_epoch = s->loader->num_batches();
  out.keep_alive = s;
  return out;
}

template <class D>
void run_train(const TrainOptions& o, const blip::cli::CommonOptions& common) {
  using namespace blip;
  using Model = cli::CliModelOn<D>;
  const bool fashion = o.dataset == "fashion-mnist";
  BLIP_CHECK(fashion || o.dataset == "coco" || o.dataset == "flickr30k" || o.dataset == "jsonl", "unknown --dataset '",
             o.dataset, "' (known: fashion-mnist, coco, flickr30k, jsonl)");
  const std::string preset = o.preset.empty() && o.config.empty() ? (fashion ? "fashion-mnist" : "base") : o.preset;
  // fashion-mnist is train's own preset; the others and --config resolve as every command's do.
  cli::ModelChoice choice{o.checkpoint, o.preset == "fashion-mnist" ? std::string() : o.preset, o.config, o.vocab};
  pretrained::PretrainedOptions po = choice.options();
  if (o.preset == "fashion-mnist") {
    po.config = train::fashion_mnist_config();
    po.config_name = "preset 'fashion-mnist'";
  }
  std::unique_ptr<Model> model;
  std::optional<text::BertTokenizer> loaded_tokenizer;
  BlipConfig config;
  if (!o.checkpoint.empty()) {
    // Fine-tuning: the checkpoint describes itself; --preset / --config only where it does not.
    po.adjust = [&](BlipConfig& c) { c.seed = o.seed; };
    auto p = pretrained::load_pretrained<Model>(o.checkpoint, po);
    model = std::move(p.model);
    loaded_tokenizer = std::move(p.tokenizer);
    config = p.config;
  } else {
    config = po.config ? *po.config : fashion ? train::fashion_mnist_config() : presets::blip_base();
    config.seed = o.seed;
    model = std::make_unique<Model>(config);
    Generator init(o.seed);
    model->init_weights(init);
  }
  BLIP_CHECK(!fashion || (config.vision.in_channels == 1 && config.vision.img_size == 28), "--dataset fashion-mnist needs ",
             "a model of 28x28 gray images (--preset fashion-mnist), not one of ", config.vision.img_size, "x",
             config.vision.img_size, " with ", config.vision.in_channels, " channels");
  const text::BertTokenizer tokenizer =
      loaded_tokenizer ? std::move(*loaded_tokenizer)
                       : pretrained::resolve_tokenizer(pretrained::ModelFiles{}, {}, config, po).tokenizer;
  // Data parallel under mpirun: each rank loads its shard, rank 0's weights start everywhere,
  // and only rank 0 writes the log, the checkpoints and the progress bar.
  dist::Communicator& comm = cli::communicator(common);
  // Several GPUs: --dist nccl (resolve_device refuses MPI with --device cuda); the bookkeeping
  // collectives' host values are staged through device memory there (dist::all_reduce_host).
  const bool main_rank = comm.is_main();
  dist::broadcast_model(comm, *model);
  BatchStream stream = fashion ? fashion_mnist_stream(o, tokenizer, comm) : loader_stream(o, config, tokenizer, comm);

  const int64_t steps_per_epoch = std::max<int64_t>(1, stream.batches_per_epoch / o.accumulation);
  train::TrainConfig tc;
  tc.total_steps = o.steps > 0 ? o.steps : o.epochs * steps_per_epoch;
  tc.accumulation = o.accumulation;
  tc.optimizer.lr = o.lr;
  tc.optimizer.weight_decay = o.weight_decay;
  tc.warmup_steps = o.warmup_steps;
  tc.alpha = config.alpha;
  tc.alpha_warmup_steps = static_cast<int64_t>(o.alpha_warmup_epochs * static_cast<double>(steps_per_epoch));
  train::Trainer<float, D> trainer(named_parameters(*model), tc);
  trainer.set_communicator(comm);

  if (main_rank) std::filesystem::create_directories(o.out);
  const std::string state_path = (std::filesystem::path(o.out) / "training_state.safetensors").string();
  if (!o.resume.empty()) {
    const auto resumed = io::load_training_state(o.resume, *model, trainer.optimizer());
    BLIP_CHECK(resumed.progress.step <= tc.total_steps, "--resume: '", o.resume, "' is at step ", resumed.progress.step,
               ", past the ", tc.total_steps, " steps of this run");
    if (resumed.extra.contains("total_steps") && resumed.extra["total_steps"] != tc.total_steps)
      std::fprintf(stderr, "blip train: warning: '%s' was saved by a run of %lld steps, this one has %lld: the schedules differ\n",
                   o.resume.c_str(), static_cast<long long>(resumed.extra["total_steps"].template get<int64_t>()),
                   static_cast<long long>(tc.total_steps));
    // Each step consumes --accumulation batches, so the saved position must be exactly where
    // that many steps end; anything else is a damaged state, or one saved with another --batch,
    // --accumulation or dataset (whose batches would then not be the ones the run expects).
    const auto& p = resumed.progress;
    const int64_t bpe = stream.batches_per_epoch;
    const int64_t saved_world = resumed.extra.contains("world_size") ? resumed.extra["world_size"].template get<int64_t>() : 1;
    BLIP_CHECK(saved_world == comm.size(), "--resume: '", o.resume, "' was saved by ", saved_world,
               " ranks and this run has ", comm.size(), "; the data position is per rank, so resume with ", saved_world,
               " (docs/distributed.md)");
    BLIP_CHECK(p.batch_in_epoch <= bpe && p.epoch <= p.step * o.accumulation / std::max<int64_t>(bpe, 1) + 1 &&
                   p.epoch * bpe + p.batch_in_epoch == p.step * o.accumulation,
               "--resume: '", o.resume, "' is at step ", p.step, ", epoch ", p.epoch, ", batch ", p.batch_in_epoch,
               ", which ", p.step, " steps of ", o.accumulation, " batches (", bpe,
               " per epoch) cannot reach: the state is damaged, or was saved with another --batch, "
               "--accumulation or dataset");
    trainer.set_step_index(resumed.progress.step);
    stream.seek(resumed.progress.epoch, resumed.progress.batch_in_epoch);
    if (!common.quiet && main_rank)
      std::fprintf(stderr, "blip train: resumed from '%s' at step %lld (epoch %lld, batch %lld)\n", o.resume.c_str(),
                   static_cast<long long>(resumed.progress.step), static_cast<long long>(resumed.progress.epoch),
                   static_cast<long long>(resumed.progress.batch_in_epoch));
  }
  const auto save_state = [&](int64_t step) {
    if (!main_rank) return;
    io::TrainingProgress p = stream.position();
    p.step = step;
    io::save_training_state(state_path, *model, trainer.optimizer(), p, {},
                            {{"dataset", o.dataset}, {"preset", preset}, {"total_steps", tc.total_steps}, {"world_size", comm.size()}});
  };
  train::LoopOptions loop;
  if (main_rank) loop.metrics_path = (std::filesystem::path(o.out) / "metrics.jsonl").string();
  loop.log_every = o.log_every;
  loop.checkpoint_every = o.save_every;
  loop.stop_at_step = o.stop_after;
  loop.quiet = common.quiet || !main_rank;
  const auto result = [&] {
    // --train-precision bf16: autocast (weights change every step, so they are converted per use).
    const blip::PrecisionScope autocast(common.train_precision, blip::PrecisionScope::Weights::changing);
    return train::run_training(trainer, train::blip_micro_loss(*model, stream.next, {}, comm), loop, save_state);
  }();
  if (!main_rank) return;
  const std::string weights = (std::filesystem::path(o.out) / "model.safetensors").string();
  // Self-describing: the config and the vocabulary travel in the metadata and in config.json.
  io::save_safetensors(weights, io::export_state_dict(*model), pretrained::model_metadata(config, &tokenizer.vocab()));
  pretrained::write_config_beside(weights, config);
  std::printf("trained %lld steps in %.1f s (%.0f images/s); final loss %.4f; wrote %s, %s and %s\n",
              static_cast<long long>(result.steps), result.seconds, result.images_per_s, result.last.loss,
              weights.c_str(), state_path.c_str(), loop.metrics_path.c_str());
}

void add_train(CLI::App& app, const blip::cli::CommonOptions& common) {
  auto o = std::make_shared<TrainOptions>();
  CLI::App* cmd = app.add_subcommand("train", "Train a BLIP retrieval model (ITC + ITM) with checkpoints and resume");
  cmd->add_option("--dataset", o->dataset, "fashion-mnist, coco (Karpathy JSON), flickr30k or jsonl")->capture_default_str();
  cmd->add_option("--data", o->data, "Fashion-MNIST folder (gzipped IDX files)")->capture_default_str();
  cmd->add_option("--ann", o->ann, "Annotation file (coco, flickr30k, jsonl)");
  cmd->add_option("--images", o->images, "Image root of the annotations (coco, flickr30k, jsonl)");
  cmd->add_option("--split", o->split, "Flickr30k split")->capture_default_str();
  auto* preset_opt = cmd->add_option("--preset", o->preset,
                                     "Model size: fashion-mnist (default for that dataset), tiny, base (default), large");
  cmd->add_option("--config", o->config, "Model sizes as a JSON file (blip's config.json or transformers' BlipConfig)")
      ->excludes(preset_opt);
  cmd->add_option("--checkpoint", o->checkpoint,
                  "Start from this model (checkpoint file or model folder, any naming) instead of a random init");
  cmd->add_option("--vocab", o->vocab, "Vocabulary, vocab.txt or tokenizer.json (default: the model's, else the one shipped with blip)");
  cmd->add_option("--epochs", o->epochs, "Epochs (mmpretrain: 6)")->check(blip::cli::positive())->capture_default_str();
  cmd->add_option("--steps", o->steps, "Optimiser steps instead of --epochs")->check(blip::cli::non_negative());
  cmd->add_option("--batch", o->batch, "Images per micro-batch")->check(blip::cli::positive())->capture_default_str();
  cmd->add_option("--accumulation", o->accumulation, "Micro-batches per optimiser step")->check(blip::cli::positive())->capture_default_str();
  cmd->add_option("--lr", o->lr, "Peak learning rate (AdamW; mmpretrain: 2e-5)")->check(blip::cli::positive())->capture_default_str();
  cmd->add_option("--weight-decay", o->weight_decay, "AdamW weight decay on every parameter")->check(blip::cli::non_negative())->capture_default_str();
  cmd->add_option("--warmup-steps", o->warmup_steps, "Linear learning-rate warm-up steps before the cosine")->check(blip::cli::non_negative())->capture_default_str();
  cmd->add_option("--alpha-warmup-epochs", o->alpha_warmup_epochs, "Epochs over which the ITC alpha ramps up (WarmupParamHook)")->check(blip::cli::non_negative())->capture_default_str();
  cmd->add_option("--out", o->out, "Output folder: metrics.jsonl, training_state.safetensors, model.safetensors")->capture_default_str();
  cmd->add_option("--save-every", o->save_every, "Save the training state every N steps (and always at the end)")->check(blip::cli::non_negative());
  cmd->add_option("--stop-after", o->stop_after, "Stop (and save the state) once this many steps are done; --resume continues")
      ->check(blip::cli::non_negative());
  cmd->add_option("--resume", o->resume, "Continue from a training_state.safetensors");
  cmd->add_option("--log-every", o->log_every, "Metrics log interval in steps")->check(blip::cli::positive())->capture_default_str();
  cmd->add_option("--seed", o->seed, "Seed of the initialisation, batch order and negatives")->capture_default_str();
  cmd->add_option("--workers", o->workers, "Image loading threads (coco, flickr30k, jsonl; -1: all cores)")->capture_default_str();
  cmd->callback([o, &common] {
    blip::cli::on_device(common, [&]<class D>() { run_train<D>(*o, common); });
  });
}

}  // namespace

BLIP_CLI_COMMAND(10, add_train);
