#!/usr/bin/env python3
"""HuggingFace parity fixtures: small BlipForImageTextRetrieval models with random weights.

Writes, for each case, a model folder exactly as transformers' save_pretrained writes it
(config.json, model.safetensors or pytorch_model.bin, the tokenizer files, preprocessor_config.json)
and what transformers itself computes from it (expected.safetensors):

  pixel_values  [I, 3, S, S]  BlipImageProcessorPil on images/*.png (Pillow BICUBIC)
  input_ids     [T, L]        the tokenizer on captions.txt (padding to the longest)
  attention_mask[T, L]
  image_feat    [I, E]        normalize(vision_proj(image_embeds[:, 0]))
  text_feat     [T, E]        normalize(text_proj(text_encoder(ids, mask)[:, 0]))
  itm_logits    [I, T, 2]     itm_head(text_encoder(ids with [ENC] first, mask, image_embeds)[:, 0])

The ITM input starts with [ENC], as mmpretrain's and Salesforce's BLIP build it (transformers
takes input_ids as given). Run from the repository root, in the peers' venv:

  .venv/bin/python tests/data/hf/make_hf_fixtures.py tests/data/hf
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image
from safetensors.torch import save_file
from transformers import BertTokenizer, BlipConfig, BlipForImageTextRetrieval
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

CASES = {
    # A small model in HF's defaults (vision layer_norm_eps 1e-5), saved as safetensors.
    "small": dict(
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    image_size=32, patch_size=8, layer_norm_eps=1e-5),
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=40),
        image_text_hidden_size=16, safe=True),
    # Vision wider than text (encoder_width != hidden_size), mmpretrain's eps, pytorch_model.bin
    # and vocab.txt.
    "wide_vision": dict(
        vision=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=3,
                    image_size=48, patch_size=16, layer_norm_eps=1e-6),
        text=dict(hidden_size=24, intermediate_size=40, num_hidden_layers=1, num_attention_heads=2,
                  max_position_embeddings=30),
        image_text_hidden_size=8, safe=False),
}

CAPTIONS = ["a dog on the beach", "a red car", "the cats in the grass", "a woman with a blue umbrella zzz"]
WORDS = ["a", "dog", "cat", "on", "the", "beach", "red", "blue", "car", "man", "woman", "with", "##s", "in",
         "of", "and", "is", "green", "grass", "umbrella", "sky", "."]


def write_vocab(path: Path, bert_vocab: Path) -> int:
    """bert-base-uncased's first 104 lines ([PAD], [unused*], [UNK], [CLS], [SEP], [MASK]) + WORDS."""
    head = bert_vocab.read_text(encoding="utf-8").splitlines()[:104]
    lines = head + WORDS
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def make_images(folder: Path, rng: np.random.Generator) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate([(45, 60), (64, 64), (30, 90)]):
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], axis=-1)
        img = np.clip(base + rng.normal(0, 25, size=(h, w, 3)), 0, 255).astype(np.uint8)
        p = folder / f"img{i}.png"
        Image.fromarray(img, "RGB").save(p)
        paths.append(p)
    return paths


def randomise(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * 0.08
            p.copy_(1.0 + noise if ("layer_norm" in name or "LayerNorm" in name or "layernorm" in name)
                    and name.endswith("weight") else noise)


def main(out_root: Path) -> None:
    bert_vocab = Path(__file__).resolve().parents[3] / "data" / "bert-base-uncased-vocab.txt"
    torch.manual_seed(0)
    for seed, (name, case) in enumerate(CASES.items()):
        case_dir = out_root / name
        model_dir = case_dir / "model"
        model_dir.mkdir(parents=True, exist_ok=True)
        vocab_lines = write_vocab(case_dir / "vocab_source.txt", bert_vocab)
        tok = BertTokenizer(str(case_dir / "vocab_source.txt"), do_lower_case=True, bos_token="[DEC]",
                            additional_special_tokens=["[ENC]"])
        (case_dir / "vocab_source.txt").unlink()
        text = dict(case["text"], vocab_size=vocab_lines + 2, bos_token_id=vocab_lines, pad_token_id=0,
                    sep_token_id=102)
        config = BlipConfig(text_config=text, vision_config=case["vision"],
                            image_text_hidden_size=case["image_text_hidden_size"])
        model = BlipForImageTextRetrieval(config).eval()
        randomise(model, 1234 + seed)
        model.save_pretrained(model_dir)
        tok.save_pretrained(model_dir)
        if not case["safe"]:
            # The layout of older transformers releases and of many hub folders: pytorch_model.bin
            # (a torch.save zip) and vocab.txt instead of model.safetensors and tokenizer.json.
            torch.save(model.state_dict(), model_dir / "pytorch_model.bin")
            (model_dir / "model.safetensors").unlink()
            vocab = json.loads((model_dir / "tokenizer.json").read_text())["model"]["vocab"]
            (model_dir / "vocab.txt").write_text("".join(t + "\n" for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])))
            (model_dir / "tokenizer.json").unlink()
        size = case["vision"]["image_size"]
        processor = BlipImageProcessorPil(size={"height": size, "width": size})
        processor.save_pretrained(model_dir)

        rng = np.random.default_rng(seed)
        images = make_images(case_dir / "images", rng)
        (case_dir / "captions.txt").write_text("\n".join(CAPTIONS) + "\n", encoding="utf-8")
        pixel_values = processor([Image.open(p).convert("RGB") for p in images], return_tensors="pt")["pixel_values"]
        enc = tok(CAPTIONS, padding="longest", return_tensors="pt")
        ids, mask = enc["input_ids"], enc["attention_mask"]
        enc_id = tok.convert_tokens_to_ids("[ENC]")
        itm_ids = ids.clone()
        itm_ids[:, 0] = enc_id
        with torch.no_grad():
            image_embeds = model.vision_model(pixel_values=pixel_values).last_hidden_state
            text_embeds = model.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            image_feat = torch.nn.functional.normalize(model.vision_proj(image_embeds[:, 0]), dim=-1)
            text_feat = torch.nn.functional.normalize(model.text_proj(text_embeds[:, 0]), dim=-1)
            n_img, n_txt = image_embeds.shape[0], ids.shape[0]
            logits = torch.zeros(n_img, n_txt, 2)
            for i in range(n_img):
                emb = image_embeds[i:i + 1].expand(n_txt, -1, -1)
                atts = torch.ones(emb.shape[:-1], dtype=torch.long)
                out = model.text_encoder(input_ids=itm_ids, attention_mask=mask, encoder_hidden_states=emb,
                                         encoder_attention_mask=atts).last_hidden_state
                logits[i] = model.itm_head(out[:, 0])
            # transformers' own forward agrees with the pieces above (cosine and ITM of pair 0, 0)
            full = model(input_ids=ids, pixel_values=pixel_values, attention_mask=mask, use_itm_head=False)
            assert torch.allclose(full.itm_score, image_feat @ text_feat.t(), atol=1e-6)
            itm = model(input_ids=itm_ids[:1], pixel_values=pixel_values[:1], attention_mask=mask[:1])
            assert torch.allclose(itm.itm_score[0], logits[0, 0], atol=1e-5)
        save_file({"pixel_values": pixel_values.contiguous(), "input_ids": ids.contiguous(),
                   "attention_mask": mask.contiguous(), "image_feat": image_feat.contiguous(),
                   "text_feat": text_feat.contiguous(), "itm_logits": logits.contiguous()},
                  str(case_dir / "expected.safetensors"),
                  metadata={"transformers": transformers.__version__, "torch": torch.__version__})
        (case_dir / "case.json").write_text(json.dumps(
            {"images": [p.name for p in images], "enc_token_id": enc_id,
             "transformers": transformers.__version__, "torch": torch.__version__}, indent=1) + "\n")
        print(name, "ok:", sorted(p.name for p in model_dir.iterdir()))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/hf"))
