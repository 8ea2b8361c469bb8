"""Times HF transformers' BlipForImageTextRetrieval (BLIP-base sizes, random weights) on the GPU
in the four cases bench/cuda_bench.cpp times, in fp32 and under torch.autocast('cuda', bfloat16).
mmpretrain is timed too where it imports (it needs transformers < 5). Runs on the lent GPU
machine (scripts/gpu_check.sh): torch and transformers are there, the network is not.

  python3 bench/gpu_peers.py [--json out.json] [--n 5]

Cases (items per second, median of n after one warm-up; torch.cuda.synchronize() ends each call):
  a  image features, batch 128 of 384x384 (vision encoder + projection + L2 norm)
  b  text features, batch 1024 of length 35
  c  ITM of 8 images x 128 texts (HF computes cross-attention per pair)
  d  one training step at batch 32: in-batch ITC + ITM CE on the positive pairs, each encoder run
     once (HF has no queue, momentum encoders or hard negatives: less work than BLIP's loss), backward
"""
import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

IMG, TXT_LEN, VOCAB = 384, 35, 30524
A_BATCH, B_BATCH, C_IMAGES, C_TEXTS, D_BATCH = 128, 1024, 8, 128, 32


def timed(torch, fn, n):
    fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--json")
    p.add_argument("--n", type=int, default=5)
    args = p.parse_args()
    import torch
    import torch.nn.functional as F
    import transformers
    from transformers import BlipConfig, BlipForImageTextRetrieval

    dev = torch.device("cuda")
    torch.manual_seed(0)
    cfg = BlipConfig(
        vision_config=dict(image_size=IMG, patch_size=16, hidden_size=768, num_hidden_layers=12,
                           num_attention_heads=12, intermediate_size=3072),
        text_config=dict(vocab_size=VOCAB, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                         intermediate_size=3072, encoder_hidden_size=768),
        image_text_hidden_size=256)
    model = BlipForImageTextRetrieval(cfg).to(dev)

    def ids(n, first):
        t = torch.randint(1000, 29000, (n, TXT_LEN), device=dev)
        t[:, 0], t[:, -1] = first, 102
        return t

    pixels = torch.randn(A_BATCH, 3, IMG, IMG, device=dev)
    txt_ids, txt_mask = ids(B_BATCH, 101), torch.ones(B_BATCH, TXT_LEN, dtype=torch.long, device=dev)
    img_embeds = torch.randn(C_IMAGES, (IMG // 16) ** 2 + 1, 768, device=dev)
    itm_ids, itm_mask = ids(C_TEXTS, 30523), torch.ones(C_TEXTS, TXT_LEN, dtype=torch.long, device=dev)
    tr_pix, tr_ids = torch.randn(D_BATCH, 3, IMG, IMG, device=dev), ids(D_BATCH, 101)
    tr_mask = torch.ones(D_BATCH, TXT_LEN, dtype=torch.long, device=dev)

    def a():
        emb = model.vision_model(pixel_values=pixels).last_hidden_state
        return F.normalize(model.vision_proj(emb[:, 0, :]), dim=-1)

    def b():
        h = model.text_encoder(input_ids=txt_ids, attention_mask=txt_mask).last_hidden_state
        return F.normalize(model.text_proj(h[:, 0, :]), dim=-1)

    def c():
        out = []
        for i in range(C_IMAGES):
            enc = img_embeds[i:i + 1].expand(C_TEXTS, -1, -1)
            att = torch.ones(enc.shape[:-1], dtype=torch.long, device=dev)
            h = model.text_encoder(input_ids=itm_ids, attention_mask=itm_mask, encoder_hidden_states=enc,
                                   encoder_attention_mask=att).last_hidden_state
            out.append(model.itm_head(h[:, 0, :])[:, 1])
        return torch.cat(out)

    def d_loss():
        # BLIP's two objectives on one pass of each encoder (HF's forward(use_itm_head=...) would run
        # the vision tower twice): in-batch ITC, and ITM on the positive pairs.
        emb = model.vision_model(pixel_values=tr_pix).last_hidden_state
        img = F.normalize(model.vision_proj(emb[:, 0, :]), dim=-1)
        txt_h = model.text_encoder(input_ids=tr_ids, attention_mask=tr_mask).last_hidden_state
        txt = F.normalize(model.text_proj(txt_h[:, 0, :]), dim=-1)
        sim = img @ txt.t()
        target = torch.arange(D_BATCH, device=dev)
        itc = (F.cross_entropy(sim / 0.07, target) + F.cross_entropy(sim.t() / 0.07, target)) / 2
        att = torch.ones(emb.shape[:-1], dtype=torch.long, device=dev)
        h = model.text_encoder(input_ids=tr_ids, attention_mask=tr_mask, encoder_hidden_states=emb,
                               encoder_attention_mask=att).last_hidden_state
        itm = model.itm_head(h[:, 0, :])
        return F.cross_entropy(itm, torch.ones(D_BATCH, dtype=torch.long, device=dev)) + itc

    results = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
               "transformers": transformers.__version__, "peers": {}}
    for precision in ("fp32", "bf16"):
        auto = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if precision == "bf16" else None

        def under(fn):
            def call():
                if auto is None:
                    return fn()
                with auto():
                    return fn()
            return call

        def step():
            loss = under(d_loss)()
            loss.backward()
            model.zero_grad(set_to_none=True)

        row = {}
        model.eval()
        with torch.no_grad():
            row["a_images_per_s"] = A_BATCH / timed(torch, under(a), args.n)
            row["b_texts_per_s"] = B_BATCH / timed(torch, under(b), args.n)
            row["c_pairs_per_s"] = C_IMAGES * C_TEXTS / timed(torch, under(c), args.n)
        model.train()
        row["d_steps_per_s"] = 1.0 / timed(torch, step, max(2, args.n // 2))
        results["peers"]["hf-" + precision] = row
        print(f"hf {precision}: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items()), flush=True)
    try:
        import mmpretrain  # noqa: F401  (needs transformers < 5; absent on the lent machine so far)
        results["mmpretrain"] = "importable, not timed by this script yet"
    except Exception as e:  # ImportError or its import-time breakage under transformers 5
        results["mmpretrain"] = f"not importable here ({type(e).__name__})"
    print(f"mmpretrain: {results['mmpretrain']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
