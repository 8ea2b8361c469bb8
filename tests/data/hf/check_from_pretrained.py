#!/usr/bin/env python3
"""transformers loads what `blip convert --to-names hf` writes: from_pretrained on the folder, then
the same image_feat / text_feat as blip's `blip embed` gave (run in the peers' venv):

  blip convert tests/data/hf/small/model out/hf/model.safetensors --to-names hf
  blip embed --checkpoint out/hf --images tests/data/hf/small/images --out out/img.npy
  blip embed --checkpoint out/hf --texts tests/data/hf/small/captions.txt --out out/txt.npy
  .venv/bin/python tests/data/hf/check_from_pretrained.py out/hf out/img.npy out/txt.npy tests/data/hf/small
"""
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer, BlipForImageTextRetrieval
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil


def main(folder: str, img_npy: str, txt_npy: str, case: str) -> None:
    model = BlipForImageTextRetrieval.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    proc = BlipImageProcessorPil.from_pretrained(folder)
    rows = Path(img_npy).with_suffix(".txt").read_text().splitlines()
    images = [Image.open(Path(case) / "images" / r).convert("RGB") for r in rows]
    captions = [l for l in (Path(case) / "captions.txt").read_text().splitlines() if l]
    pixels = proc(images, return_tensors="pt")["pixel_values"]
    enc = tok(captions, padding="longest", return_tensors="pt")
    with torch.no_grad():
        img = model.vision_model(pixel_values=pixels).last_hidden_state
        image_feat = torch.nn.functional.normalize(model.vision_proj(img[:, 0]), dim=-1).numpy()
        txt = model.text_encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        text_feat = torch.nn.functional.normalize(model.text_proj(txt[:, 0]), dim=-1).numpy()
    di = np.abs(image_feat - np.load(img_npy)).max()
    dt = np.abs(text_feat - np.load(txt_npy)).max()
    print(f"[ENC] id {tok.convert_tokens_to_ids('[ENC]')}; image_feat max diff {di:.3g}; text_feat max diff {dt:.3g}")
    sys.exit(0 if di < 1e-4 and dt < 1e-4 else 1)


if __name__ == "__main__":
    main(*sys.argv[1:5])
