"""GEMM peer for bench_ops BM_Gemm_*/M:577: torch F.linear (x @ w.T + b) in fp32 and bf16.

Same threads and timing loop as bench/pytorch_peers.py (one warm-up call, median of 30).
Run from the peers venv that bench/run_pytorch_peers.sh sets up:
    OMP_NUM_THREADS=2 .venv/bin/python bench/torch_gemm_peer.py
"""
import statistics

import torch

from pytorch_peers import THREADS, time_it

SHAPES = [(577, 768, 2304), (577, 768, 3072), (577, 3072, 768), (577, 768, 768)]  # M, K, N


def main():
    torch.set_num_threads(THREADS)
    print("torch", torch.__version__, "threads", torch.get_num_threads())
    for m, k, n in SHAPES:
        for dtype in (torch.float32, torch.bfloat16):
            x, w, b = torch.randn(m, k, dtype=dtype), torch.randn(n, k, dtype=dtype), torch.randn(n, dtype=dtype)
            samples, _ = time_it(lambda: torch.nn.functional.linear(x, w, b), 30)
            med = statistics.median(samples)
            print(f"{m}x{k}x{n} {str(dtype):15s} {med * 1e3:8.3f} ms {2 * m * k * n / med / 1e9:7.1f} GFLOP/s")


if __name__ == "__main__":
    main()
