#!/bin/bash
# Idle figures of a node from `moltbot init` (no pushed skills): RSS and
# threads 2 s after ready, goroutines and heap in use from /metrics.
# Usage: scripts/skillpush-idle.sh BIN PORT   (BENCHMARKS.md, "A tenant's pushed skills")
set -u
bin=$1; port=$2
ws=$(mktemp -d)
"$bin" init --workspace "$ws" >/dev/null 2>&1
sed -i "s/port: [0-9]*/port: $port/" "$ws/moltbot.yaml"
"$bin" start --workspace "$ws" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
sleep 2
rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
thr=$(awk '/Threads/ {print $2}' /proc/$pid/status)
m=$(curl -s -H "Authorization: Bearer $(cat "$ws/admin.key")" "http://127.0.0.1:$port/metrics")
g=$(echo "$m" | awk '/^go_goroutines / {print $2}')
h=$(echo "$m" | awk '/^go_memstats_heap_inuse_bytes / {print $2}')
echo "$(basename "$bin") rss_kib=$rss threads=$thr goroutines=$g heap_inuse=$h"
kill $pid; wait $pid 2>/dev/null
rm -rf "$ws"
