#!/usr/bin/env bash
# Load on a running `blip serve`: N requests from C concurrent clients (curl, keep-alive off),
# distinct text queries; prints the throughput and the p50 / p99 latency.
#   bench/serve_load.sh URL [requests=64] [clients=8] [extra query params]
# e.g. bench/serve_load.sh http://127.0.0.1:8080 64 8 "&n=10&rerank=0"
set -euo pipefail
url=$1 n=${2:-64} c=${3:-8} extra=${4:-}
start=$(date +%s.%N)
seq "$n" | xargs -P "$c" -I{} curl -s -o /dev/null -w '%{http_code} %{time_total}\n' \
  "$url/api/search?q=a+photo+of+thing+{}$extra" > /tmp/serve_load.$$
end=$(date +%s.%N)
errors=$(awk '$1 != 200' /tmp/serve_load.$$ | wc -l)
sort -k2 -n /tmp/serve_load.$$ | awk -v n="$n" -v t="$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" -v e="$errors" '
  { lat[NR] = $2 }
  END { i = int(NR * 0.99); if (i < 1) i = 1
        printf "%d requests, %d errors, %.2f s, %.1f requests/s, p50 %.1f ms, p99 %.1f ms\n", n, e, t, n / t,
               1000 * lat[int(NR * 0.5) + 1], 1000 * lat[i] }'
rm -f /tmp/serve_load.$$
