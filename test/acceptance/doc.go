// Package acceptance holds tests that drive a real moltbot node with the
// real clients people point at it: the npm `openai`, `@anthropic-ai/sdk`
// and `ollama` libraries (scripts in js/, pinned by js/package-lock.json),
// and the `ollama` CLI built from its Go module.
//
// Each test group builds cmd/moltbot once (as make build does), starts a
// `moltbot sim` and a node (`moltbot start`, auth on, a key from `moltbot
// keys create`) on free loopback ports, runs a client and checks what it
// saw: a script prints one JSON object, one member per case, and the Go
// side judges it. Every process has a deadline and is stopped when its
// test ends.
//
// What they need, and what happens without it:
//   - Node 20+ and the packages of js/ (`make acceptance-deps` runs npm ci
//     there; make test does it first). Without node the npm tests skip.
//   - The ollama CLI: MOLTBOT_OLLAMA_CLI, else
//     $HOME/.cache/moltbot-ollama/bin/ollama (`make acceptance-ollama-cli`
//     builds it there with scripts/ollama-cli/build.sh, about 8 minutes
//     cold). Without it the CLI test skips.
//
// Run them alone: make acceptance (or go test ./test/acceptance/ once the
// packages are installed).
package acceptance
