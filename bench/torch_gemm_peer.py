"""GEMM peer for bench_ops BM_Gemm_*/M:577: torch F.linear (x @ w.T + b) in fp32 and bf16, 2 threads,
median of 30 after 5 warm-ups. Run from the peers venv: OMP_NUM_THREADS=2 python bench/torch_gemm_peer.py"""
import torch, time, statistics, os
torch.set_num_threads(2)
print("torch", torch.__version__, "threads", torch.get_num_threads(), "mkldnn bf16", torch.backends.mkldnn.is_available())
shapes=[(577,768,2304),(577,768,3072),(577,3072,768),(577,768,768)]
for M,K,N in shapes:
    for dt in (torch.float32, torch.bfloat16):
        x=torch.randn(M,K,dtype=dt); w=torch.randn(N,K,dtype=dt); b=torch.randn(N,dtype=dt)
        f=lambda: torch.nn.functional.linear(x,w,b)
        for _ in range(5): f()
        ts=[]
        for _ in range(30):
            t=time.perf_counter(); f(); ts.append(time.perf_counter()-t)
        med=statistics.median(ts)
        print(f"{M}x{K}x{N} {str(dt):15s} {med*1e3:8.3f} ms {2*M*K*N/med/1e9:7.1f} GFLOP/s")
