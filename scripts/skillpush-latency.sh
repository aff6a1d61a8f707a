#!/bin/bash
# Time from `moltbot skills push` to node A until a turn on node B (a
# two-node loopback cluster) runs the pushed skill, six pushes in a row.
# Usage: scripts/skillpush-latency.sh BIN WORKER   (BENCHMARKS.md, "A tenant's pushed skills")
set -u
bin=$1; worker=$2
d=$(mktemp -d)
pids=""
for i in 0 1; do
  ws=$d/n$i; mkdir -p "$ws"
  cat > "$ws/moltbot.yaml" <<Y
server: {host: 127.0.0.1, port: 3820$i}
log: {level: error}
providers: [{name: sim, type: sim, sim: {ttft: 0s, itl: 0s, tokens: 4}}]
models: {primary: sim/sim}
skills: {worker: $worker}
cluster: {bind: "127.0.0.1:3821$i", rpc: "127.0.0.1:3822$i", join: ["127.0.0.1:3821$((1-i))"], replicas: 2, profile: test}
Y
  "$bin" start --workspace "$ws" > "$ws/log" 2>&1 &
  pids="$pids $!"
done
for p in 38200 38201; do for _ in $(seq 200); do curl -sf "http://127.0.0.1:$p/readyz" >/dev/null && break; sleep 0.1; done; done
sleep 3
for round in 1 2 3 4 5 6; do
  mkdir -p "$d/push$round"
  printf "module.exports = {name: 'greet', patterns: [/^greet (\\\\w+)\$/], handler: async (c) => 'v$round ' + c.matches[1]};\n" > "$d/push$round/greet.js"
  t0=$(date +%s%N)
  "$bin" skills push --url http://127.0.0.1:38200 "$d/push$round" >/dev/null || { echo push failed; break; }
  t1=$(date +%s%N)
  while true; do
    r=$(curl -s http://127.0.0.1:38201/v1/chat/completions -H 'Content-Type: application/json' -d '{"model":"moltbot","messages":[{"role":"user","content":"greet Ann"}]}')
    case "$r" in *"v$round Ann"*) break;; esac
  done
  t2=$(date +%s%N)
  echo "round $round: push answered in $(( (t1-t0)/1000000 )) ms; a turn on node B ran it $(( (t2-t0)/1000000 )) ms after the push began"
done
kill $pids; wait 2>/dev/null; rm -rf "$d"
