#!/usr/bin/env python3
"""Times the PyTorch BLIP peers on the four cases our C++ benchmark times.

Peers: HuggingFace transformers' BlipForImageTextRetrieval and mmpretrain's
BlipRetrieval, both built at BLIP-base retrieval sizes with random weights
(nothing is downloaded), CPU, 2 threads.

Precisions (--precision, default fp32,bf16; fp16 on request: the same with
torch.float16, reported as "hf-fp16", "mmpretrain-fp16"): each peer runs every case once in
plain float32 (reported as "hf", "mmpretrain") and once under
torch.autocast('cpu', dtype=torch.bfloat16) (reported as "hf-bf16",
"mmpretrain-bf16"; the weights stay float32, autocast casts them per call).
Autocast is entered inside each timed call, as a user would per batch, so its
weight casts are timed too. For (d) the forward and the loss run under autocast
and backward() runs outside it, as PyTorch's AMP docs recommend. For bf16, (a)
and (b) also report min_cos_vs_fp32: the smallest cosine similarity between a
row of the bf16 features and the same row of the float32 features, both
computed in that child from the same seeded weights and inputs (the float32
reference runs after all timing, so it changes no timing and no RSS figure).

Cases:
  a  image features, batch 8 of 384x384: vision encoder + projection + L2 norm
  b  text features, batch 32 of length 35: text-only encoder + projection + norm
  c  ITM re-rank of one image against k=16 texts: cross-attending text encoder
     over the image embeds repeated 16 times (as the reference does) + ITM head
  d  one training step at batch 4: forward of the retrieval loss + backward

Each peer and precision runs in its own child process so that its peak RSS
(ru_maxrss) is its own and so that mmpretrain can see the older transformers
it needs.

Timing: 1 warm-up call, then the median of --n calls (5) for (a)-(c) and of
--n-train calls (3) for (d). On 2 otherwise idle cores the float32 run takes
about 5-6 minutes (bf16 adds a run of its own, so the default fp32,bf16 takes
roughly twice that); with a compile job on the same cores everything ran about
3.5x slower (a float32 training step 70-90 s instead of 20-22 s), so pass
--n-train 1 there, or one precision at a time.

Usage: python bench/pytorch_peers.py [--json out.json] [--peers hf,mmpretrain]
       [--cases a,b,c,d] [--precision fp32,bf16] [--n 5] [--n-train 3]
(bench/run_pytorch_peers.sh sets up the venv and runs this.)
"""
import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random weights only: never reach for the hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

THREADS = 2
IMG_BATCH, IMG_SIZE = 8, 384
TXT_BATCH, TXT_LEN = 32, 35
K = 16                      # texts re-ranked per image in (c)
TRAIN_BATCH = 4
VOCAB = 30524
CLS_ID, SEP_ID, ENC_ID = 101, 102, 30523  # [CLS] starts text mode; [ENC] replaces it for ITM

CASES = {
    "a": ("image features (batch 8, 384px)", IMG_BATCH, "ms/image"),
    "b": ("text features (batch 32, len 35)", TXT_BATCH, "ms/text"),
    "c": ("ITM re-rank (1 image x 16 texts)", K, "ms/pair"),
    "d": ("train step fwd+bwd (batch 4)", 1, "s/step"),
}
PRECISIONS = ("fp32", "bf16", "fp16")  # fp16: torch.autocast('cpu', dtype=torch.float16)
COSINE_CASES = ("a", "b")  # feature cases whose bf16 output is compared with fp32

# mmpretrain 1.2 imports names that transformers 5 no longer has, so it gets
# an older transformers from this side folder (PYTHONPATH, its child only);
# run_pytorch_peers.sh installs it there.
MM_OVERLAY = os.path.join(sys.prefix, "mmpretrain-overlay")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def time_it(fn, n):
    """1 warm-up call, then n timed calls; returns the seconds of each and the
    last call's result."""
    result = fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - t0)
    return samples, result


def peer_name(peer, precision):
    return peer if precision == "fp32" else f"{peer}-{precision}"


# ---------------------------------------------------------------- inputs
def make_inputs(torch):
    g = torch.Generator().manual_seed(0)

    def ids(batch, first):
        t = torch.randint(1000, 29000, (batch, TXT_LEN), generator=g)
        t[:, 0], t[:, -1] = first, SEP_ID  # as bench_blip.cpp: full length, no padding
        return t

    return {
        "pixels": torch.randn(IMG_BATCH, 3, IMG_SIZE, IMG_SIZE, generator=g),
        "txt_ids": ids(TXT_BATCH, CLS_ID),
        "txt_mask": torch.ones(TXT_BATCH, TXT_LEN, dtype=torch.long),
        # values don't change the cost; only the shape [1, 577, 768] matters
        "img_embeds": torch.randn(1, (IMG_SIZE // 16) ** 2 + 1, 768, generator=g),
        "itm_ids": ids(K, ENC_ID),
        "itm_mask": torch.ones(K, TXT_LEN, dtype=torch.long),
        "train_pixels": torch.randn(TRAIN_BATCH, 3, IMG_SIZE, IMG_SIZE, generator=g),
        "train_ids": ids(TRAIN_BATCH, CLS_ID),
        "train_mask": torch.ones(TRAIN_BATCH, TXT_LEN, dtype=torch.long),
    }


# ---------------------------------------------------------------- HF peer
def build_hf():
    import transformers
    from transformers import BlipConfig, BlipForImageTextRetrieval

    # BlipConfig() defaults are already close to BLIP-base; pin the retrieval sizes anyway.
    cfg = BlipConfig(
        vision_config=dict(image_size=IMG_SIZE, patch_size=16, hidden_size=768,
                           num_hidden_layers=12, num_attention_heads=12,
                           intermediate_size=3072),
        text_config=dict(vocab_size=VOCAB, hidden_size=768, num_hidden_layers=12,
                         num_attention_heads=12, intermediate_size=3072,
                         encoder_hidden_size=768),
        image_text_hidden_size=256,
    )
    model = BlipForImageTextRetrieval(cfg)
    return model, {"transformers": transformers.__version__}


def hf_cases(model, x, torch, F):
    def image_features():
        emb = model.vision_model(pixel_values=x["pixels"]).last_hidden_state
        return F.normalize(model.vision_proj(emb[:, 0, :]), dim=-1)

    def text_features():
        # no encoder_hidden_states: BlipTextModel skips its cross-attention
        h = model.text_encoder(input_ids=x["txt_ids"], attention_mask=x["txt_mask"]).last_hidden_state
        return F.normalize(model.text_proj(h[:, 0, :]), dim=-1)

    def itm_rerank():
        enc = x["img_embeds"].repeat(K, 1, 1)
        att = torch.ones(enc.shape[:-1], dtype=torch.long)
        h = model.text_encoder(input_ids=x["itm_ids"], attention_mask=x["itm_mask"],
                               encoder_hidden_states=enc, encoder_attention_mask=att).last_hidden_state
        return model.itm_head(h[:, 0, :])[:, 1]

    def train_loss():
        # (d) times this forward + loss, then backward and zero_grad (run_peer).
        # HF has no retrieval loss: the public forward gives ITM logits
        # (use_itm_head=True) and the image-text cosine matrix (False). Each call
        # runs the vision encoder again, as a user of this API would.
        ids, mask, pix = x["train_ids"], x["train_mask"], x["train_pixels"]
        itm = model(input_ids=ids, pixel_values=pix, attention_mask=mask, use_itm_head=True).itm_score
        sim = model(input_ids=ids, pixel_values=pix, attention_mask=mask, use_itm_head=False).itm_score
        target = torch.arange(TRAIN_BATCH)
        itc = (F.cross_entropy(sim / 0.07, target) + F.cross_entropy(sim.t() / 0.07, target)) / 2
        return F.cross_entropy(itm, torch.ones(TRAIN_BATCH, dtype=torch.long)) + itc

    note = ("HF: no momentum encoders, queues or hard negatives, so (d) does less than BLIP's "
            "loss: ITM CE on the 4 positive pairs only + in-batch contrastive CE; but the vision "
            "encoder runs twice (two forward calls)")
    return {"a": image_features, "b": text_features, "c": itm_rerank, "d": train_loss}, note


# ---------------------------------------------------------------- mmpretrain peer
def build_mmpretrain():
    import mmcv
    import mmengine
    import mmpretrain
    import transformers
    import mmpretrain.models  # registers BlipRetrieval (needs transformers<5, pycocotools)
    from mmpretrain.registry import MODELS

    med = dict(architectures=["BertModel"], attention_probs_dropout_prob=0.1,
               hidden_act="gelu", hidden_dropout_prob=0.1, hidden_size=768,
               initializer_range=0.02, intermediate_size=3072, layer_norm_eps=1e-12,
               max_position_embeddings=512, model_type="bert", num_attention_heads=12,
               num_hidden_layers=12, pad_token_id=0, add_type_embeddings=False,
               vocab_size=VOCAB, encoder_width=768, add_cross_attention=True)
    # configs/blip/blip-base_8xb32_retrieval.py without the tokenizer (it would download)
    cfg = dict(
        type="BlipRetrieval",
        vision_backbone=dict(type="VisionTransformer", arch="b", img_size=IMG_SIZE,
                             patch_size=16, out_type="raw"),
        text_backbone=dict(type="XBertEncoder", med_config=med),
        vision_neck=dict(type="Linear", in_features=768, out_features=256),
        text_neck=dict(type="Linear", in_features=768, out_features=256),
        head=dict(type="ITCHead", embed_dim=256, queue_size=57600),
        multimodal_head=dict(type="ITMHead", hidden_size=768, with_pooler=False),
        topk=256, max_txt_len=TXT_LEN,
    )
    model = MODELS.build(cfg)
    return model, {"mmpretrain": mmpretrain.__version__, "mmengine": mmengine.__version__,
                   "mmcv": mmcv.__version__, "transformers": transformers.__version__}


class PreTokenised:
    """Stands in for BlipTokenizer in model.loss: hands back fixed ids, so
    nothing is downloaded and tokenising is not timed."""

    additional_special_tokens_ids = [ENC_ID]

    def __init__(self, ids, mask):
        from transformers import BatchEncoding
        self.enc = BatchEncoding({"input_ids": ids, "attention_mask": mask})

    def __call__(self, texts, **kwargs):
        assert len(texts) == self.enc["input_ids"].shape[0]
        return self.enc


def mm_cases(model, x, torch, F):
    from mmpretrain.structures import DataSample

    def image_features():
        emb = model.vision_backbone(x["pixels"])[0]
        return F.normalize(model.vision_neck(emb[:, 0, :]), dim=-1)

    def text_features():
        h = model.text_backbone(x["txt_ids"], attention_mask=x["txt_mask"], token_type_ids=None,
                                return_dict=True, mode="text").last_hidden_state
        return F.normalize(model.text_neck(h[:, 0, :]), dim=-1)

    def itm_rerank():
        # the body of BlipRetrieval.compute_score_matrix_i2t for one image, topk=16
        enc = x["img_embeds"][0].repeat(K, 1, 1)
        att = torch.ones(enc.shape[:-1], dtype=torch.long)
        h = model.text_backbone(x["itm_ids"], attention_mask=x["itm_mask"],
                                encoder_hidden_states=enc, encoder_attention_mask=att,
                                return_dict=True).last_hidden_state
        return model.multimodal_head((h[:, 0, :],))[:, 1]

    model.tokenizer = PreTokenised(x["train_ids"], x["train_mask"])

    def train_loss():
        # The real BlipRetrieval.loss: momentum update + momentum encoders, ITC
        # against the 57600 queue, hard-negative ITM (3 x batch pairs).
        # loss() appends to data_samples, so a fresh list each step.
        samples = [DataSample(text="t", image_id=i, is_matched=True) for i in range(TRAIN_BATCH)]
        return sum(model.loss(x["train_pixels"], samples).values())

    note = ("mmpretrain: (d) is BlipRetrieval.loss itself (momentum encoders, queue, hard "
            "negatives) with a stand-in tokenizer returning pre-tokenised ids")
    return {"a": image_features, "b": text_features, "c": itm_rerank, "d": train_loss}, note


PEERS = {"hf": (build_hf, hf_cases), "mmpretrain": (build_mmpretrain, mm_cases)}


# ---------------------------------------------------------------- child: one peer
def run_peer(peer, precision, cases, n, n_train):
    import torch
    import torch.nn.functional as F

    name_p = peer_name(peer, precision)
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    build, get_cases = PEERS[peer]
    try:
        model, versions = build()
    except Exception as e:  # ImportError, or mmpretrain's import-time breakage under transformers 5
        return {"peer": name_p, "precision": precision,
                "skipped": f"not installable here ({type(e).__name__}: {e})"}
    versions["torch"] = torch.__version__
    fns, note = get_cases(model, make_inputs(torch), torch, F)

    if precision != "fp32":
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16

        def autocast():
            return torch.autocast("cpu", dtype=dtype)
    else:
        autocast = contextlib.nullcontext

    def under_autocast(fn):
        def call():
            with autocast():
                return fn()
        return call

    def train_step():
        # forward + loss under autocast, backward outside it (PyTorch AMP recipe)
        with autocast():
            loss = fns["d"]()
        loss.backward()
        model.zero_grad(set_to_none=True)

    out = {"peer": name_p, "precision": precision, "versions": versions, "note": note,
           "threads": torch.get_num_threads(), "rss_after_build_mib": peak_rss_mib(), "cases": {}}
    features = {}  # bf16 outputs of (a), (b), compared with fp32 below
    for c in cases:
        name, items, unit = CASES[c]
        log(f"[{name_p}] case {c}: {name} ...")
        if c == "d":
            model.train()
            samples, _ = time_it(train_step, n_train)
        else:
            model.eval()
            with torch.no_grad():
                samples, result = time_it(under_autocast(fns[c]), n)
            if precision != "fp32" and c in COSINE_CASES:
                features[c] = result
        med = statistics.median(samples)
        scale = 1.0 if unit.startswith("s/") else 1e3
        out["cases"][c] = {"name": name, "samples_s": samples, "median_s": med,
                           "per_item": med / items * scale, "unit": unit,
                           # ru_maxrss only grows: this is the peak up to and including this case
                           "peak_rss_mib": peak_rss_mib()}
        log(f"[{name_p}] case {c}: median {med:.3f} s = {med / items * scale:.2f} {unit}")
    out["peak_rss_mib"] = peak_rss_mib()

    # Accuracy of the reduced precision: float32 features from the same model and
    # inputs, computed after the figures above so they time and count nothing extra.
    # (d) left the weights as they were (zero_grad, no optimiser step).
    for c, low in features.items():
        model.eval()
        with torch.no_grad():
            ref = fns[c]()
        cos = F.cosine_similarity(low.float(), ref.float(), dim=-1)
        out["cases"][c]["min_cos_vs_fp32"] = cos.min().item()
        log(f"[{name_p}] case {c}: min cosine to fp32 features {cos.min().item():.6f}")
    return out


# ---------------------------------------------------------------- parent
def spawn(peer, precision, args):
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS))
    if peer == "mmpretrain" and os.path.isdir(MM_OVERLAY):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [MM_OVERLAY, env.get("PYTHONPATH")]))
    cmd = [sys.executable, os.path.abspath(__file__), "--child", peer, "--precision", precision,
           "--cases", args.cases, "--n", str(args.n), "--n-train", str(args.n_train)]
    # stderr (progress, library warnings) goes straight through; stdout carries the result
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {"peer": peer_name(peer, precision), "precision": precision,
            "skipped": f"child failed (exit {proc.returncode}); see stderr"}


def print_table(results):
    rows = [("case", "peer", "median/iter", "per item", "peak RSS")]
    for r in results:
        if "skipped" in r:
            continue
        for c, v in r["cases"].items():
            rows.append((f"({c}) {v['name']}", r["peer"], f"{v['median_s']:.3f} s",
                         f"{v['per_item']:.2f} {v['unit']}", f"{v['peak_rss_mib']:.0f} MiB"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print()
    for r in results:
        if "skipped" in r:
            print(f"{r['peer']}: {r['skipped']}")
        else:
            vers = ", ".join(f"{k} {v}" for k, v in sorted(r["versions"].items()))
            print(f"{r['peer']}: peak RSS {r['peak_rss_mib']:.0f} MiB (whole process); {vers}")
            print(f"  note: {r['note']}")
    print("peak RSS per case is the process high-water mark up to that case (ru_maxrss).")
    for r in results:
        cos = {c: v["min_cos_vs_fp32"] for c, v in r.get("cases", {}).items()
               if "min_cos_vs_fp32" in v}
        if cos:
            print(f"{r['peer']}: min cosine of {r['precision']} features to fp32 (same weights and "
                  "inputs): " + ", ".join(f"({c}) {v:.6f}" for c, v in cos.items()))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--peers", default="hf,mmpretrain")
    p.add_argument("--cases", default="a,b,c,d")
    p.add_argument("--precision", default="fp32,bf16",
                   help="fp32, bf16 and/or fp16 (torch.autocast on the CPU); each is its own run")
    p.add_argument("--n", type=int, default=5, help="timed iterations for (a)-(c)")
    p.add_argument("--n-train", type=int, default=3,
                   help="timed iterations for (d); 1 on busy cores (see top)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    if unknown := set(cases) - set(CASES):
        p.error(f"unknown cases {sorted(unknown)}")
    precisions = [q for q in args.precision.split(",") if q]
    if unknown := set(precisions) - set(PRECISIONS):
        p.error(f"unknown precisions {sorted(unknown)}")

    if args.child:
        import warnings
        warnings.filterwarnings("ignore")
        if len(precisions) != 1:
            p.error("--child takes exactly one --precision")
        print("RESULT " + json.dumps(run_peer(args.child, precisions[0], cases, args.n,
                                              args.n_train)), flush=True)
        return

    load_start = os.getloadavg()
    t0 = time.perf_counter()
    results = [spawn(peer, q, args) for peer in args.peers.split(",") if peer for q in precisions]
    wall = time.perf_counter() - t0
    print_table(results)
    print(f"total wall {wall:.0f} s; warm-up 1, then median of {args.n} ((a)-(c)) / "
          f"{args.n_train} ((d)); {THREADS} threads; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, 1-min load avg {load_start[0]:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": THREADS, "precisions": precisions, "n": args.n, "n_train": args.n_train, "wall_s": wall,
                       "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
                       "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
