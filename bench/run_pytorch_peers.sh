#!/usr/bin/env bash
# Sets up the PyTorch peers and times them: bench/run_pytorch_peers.sh [--json out.json] [...]
# Arguments go to bench/pytorch_peers.py. BLIP_PEERS_VENV picks the venv (default .venv).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${BLIP_PEERS_VENV:-$(dirname "$here")/.venv}
pip=("$venv/bin/pip" install --quiet --disable-pip-version-check)

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"${pip[@]}" -r "$here/requirements-peers.txt"

# mmpretrain is optional: a failed install leaves the HF peer to run alone.
if "${pip[@]}" -r "$here/requirements-peers-mmpretrain.txt"; then
  # mmpretrain 1.2 imports names that transformers 5 dropped, so it gets an
  # older transformers in a side folder that only its child process puts on
  # PYTHONPATH (pytorch_peers.py: MM_OVERLAY); the HF peer keeps transformers 5.
  overlay=$venv/mmpretrain-overlay
  if [ ! -f "$overlay/transformers/__init__.py" ]; then
    "${pip[@]}" --no-deps --target "$overlay" transformers==4.37.2 tokenizers==0.15.2 \
      huggingface-hub==0.20.3 requests==2.34.2 charset-normalizer==3.5.3 urllib3==2.8.0 \
      certifi==2026.10.19.post1 || echo "mmpretrain: transformers 4.37 side install failed" >&2
  fi
else
  echo "mmpretrain: pip install failed; the benchmark will report it as not installable" >&2
fi

export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 HF_HUB_OFFLINE=1
exec "$venv/bin/python" "$here/pytorch_peers.py" "$@"
