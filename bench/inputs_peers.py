"""The Python peers of bench/bench_inputs.cpp, on one core and on the same data.

HuggingFace `tokenizers` (the Rust library behind BertTokenizerFast) with the same BERT
configuration as BlipTokenizer, and Pillow decode + BICUBIC resize + numpy normalisation as
mmpretrain's pipeline. Run bench_inputs first: it writes the captions and the JPEG.
Usage: OMP_NUM_THREADS=1 RAYON_NUM_THREADS=1 python bench/inputs_peers.py VOCAB
"""
import statistics
import sys
import time

import numpy as np
from PIL import Image
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

CAPTIONS = "/tmp/blip_bench_captions.txt"
JPEG = "/tmp/blip_bench_640x480.jpg"
MEAN = np.array([122.770938, 116.7460125, 104.09373615], dtype=np.float32).reshape(3, 1, 1)
STD = np.array([68.5005327, 66.6321579, 70.32316305], dtype=np.float32).reshape(3, 1, 1)


def bert_tokenizer(vocab_path):
    vocab = {line.rstrip("\n"): i for i, line in enumerate(open(vocab_path, encoding="utf-8"))}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 101), ("[SEP]", 102)])
    tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]"])
    tok.enable_truncation(max_length=35)
    tok.enable_padding(length=35, pad_id=0, pad_token="[PAD]")
    return tok


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    tok = bert_tokenizer(sys.argv[1])
    captions = open(CAPTIONS, encoding="utf-8").read().splitlines()
    # encode one by one (as the C++ bench) and as a batch (the library's fast path, one thread)
    one = median_time(lambda: [tok.encode(c) for c in captions], 5)
    batch = median_time(lambda: tok.encode_batch(captions), 5)
    print(f"tokenizers: {len(captions) / one:,.0f} captions/s one by one, {len(captions) / batch:,.0f} captions/s encode_batch")

    def pipeline():
        with Image.open(JPEG) as img:
            rgb = img.convert("RGB").resize((384, 384), Image.BICUBIC)
        x = np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1)
        return (x - MEAN) / STD

    per_image = median_time(lambda: [pipeline() for _ in range(20)], 5) / 20
    print(f"Pillow pipeline: {1 / per_image:,.1f} images/s ({per_image * 1e3:.2f} ms/image)")


if __name__ == "__main__":
    main()
