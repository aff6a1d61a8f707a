# moltbot: every entry point. CI runs `make test` only (see .ci/run).
SHELL   := /bin/bash
GO      ?= go
PKG     := github.com/moltbot/moltbot
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X $(PKG).Version=$(VERSION)
BIN     := bin/moltbot
# Every build leaves out urfave/cli's man page and markdown generators
# (moltbot never makes either): 0.25 MB of binary and blackfriday's set-up
# at every start. grpcnotrace leaves out golang.org/x/net/trace (gRPC's
# request tracing, off unless grpc.EnableTracing is set; moltbot never sets
# it): its init registers /debug/requests on http.DefaultServeMux and its
# pages execute html/template, which would make the linker keep every
# exported method of every type (docs/DESIGN.md, "Built: the default
# build's idle RSS"; TestNoDynamicMethodLookup). The edge build:
# cmd/moltbot/edge.go (size budgets: bench/measure/size_test.go).
TAGS      := urfave_cli_no_docs,grpcnotrace
EDGE_TAGS := edge,$(TAGS)
# The packages with edge stand-ins (//go:build edge files): vetted and
# tested with EDGE_TAGS too.
EDGE_PKGS := ./actors/ ./cluster/ ./cmd/moltbot/
RUN_DIR ?= .run
PORT    ?= 3000

export CGO_ENABLED ?= 0
export GOFLAGS += -mod=mod

.PHONY: all run build build-edge size-check test test-edge unit integration vet fmt-check tidy-check lint bench measure fuzz cross proto clean redis-server \
	acceptance acceptance-deps acceptance-ollama-cli ollama-cli ollama-cli-try widget-deps

# The acceptance tests (test/acceptance): the npm clients they run live in
# ACC_JS; the ollama CLI is built into OLLAMA_CLI_DIR, outside the clone.
ACC_JS         := test/acceptance/js
# Every Node harness make test installs: the acceptance clients and the
# channels' official client libraries run against their fakes.
NPM_DIRS       := $(ACC_JS) $(patsubst %/package.json,%,$(wildcard test/channels/*/package.json))
# jsdom, for the web chat widget's script run in a DOM (channels/widget,
# cmd/moltbot TestWidget*).
WIDGET_JS      := test/widget
OLLAMA_CLI_DIR ?= $(HOME)/.cache/moltbot-ollama
export MOLTBOT_OLLAMA_CLI ?= $(OLLAMA_CLI_DIR)/bin/ollama
# make test builds the ollama CLI first (about 8 minutes cold, then kept in
# OLLAMA_CLI_DIR) and runs its acceptance test; a build that fails (no cgo
# toolchain, no apt) is reported and the test skips, saying why.
# MOLTBOT_OLLAMA_CLI_BUILD=0 leaves the build out: the test then runs only
# when the binary is already there.
ifneq ($(MOLTBOT_OLLAMA_CLI_BUILD),0)
TEST_OLLAMA_CLI := ollama-cli-try
endif

all: build

## run: start a node on 127.0.0.1:$(PORT) from the embedded demo config
## (Ollama first, then the built-in simulator), data in $(RUN_DIR)/;
## MODEL=provider/model picks the primary (e.g. MODEL=local/qwen2.5:0.5b)
run: build
	./$(BIN) start --workspace $(RUN_DIR) --preset demo --port $(PORT) --log-format text $(if $(MODEL),--model $(MODEL))

## build: stripped, version-stamped binaries in bin/: moltbot, and
## moltbot-skills (the JavaScript skills' worker, goja; the node starts it
## from beside its own binary when the workspace's skills/ holds a .js file)
build:
	$(GO) build -trimpath -tags $(TAGS) -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/moltbot
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)-skills ./cmd/moltbot-skills

## build-edge: the edge build, without what a small device's node does not
## run (cmd/moltbot/edge.go: the cluster engine, moltbot sim, moltbot bench;
## it does not build the moltbot-skills worker: a node without it warns and
## serves without its skills),
## in bin/moltbot-edge
build-edge:
	$(GO) build -trimpath -tags $(EDGE_TAGS) -ldflags "$(LDFLAGS)" -o $(BIN)-edge ./cmd/moltbot

## size-check: both builds within their size budgets (also part of make test)
size-check:
	$(GO) test -count=1 -run '^TestSizeBudget$$' -v ./bench/measure/

## test: vet, formatting, then every test (unit, fuzz seeds, multi-process
## integration, the size budgets) with the race detector; then the
## in-process multi-node cluster tests, which build without it (see
## actors/cluster_test.go). Needs nothing but Go and gcc (and installs
## Debian's redis-server for the cache's Redis tests when it can); the
## acceptance tests also Node 20+ (their npm packages installed first;
## without node they skip) and the ollama CLI (its test skips without it,
## see acceptance-ollama-cli). build first: the size budget test then
## links from its cache in seconds. The multi-process cluster tests
## (cmd/moltbot TestClusterProcesses*: three nodes, kill -9, rolling
## restarts) run on their own after the rest: beside every other package
## on 2 cores, a rolling restart loses an acknowledged turn now and then
## (docs/DESIGN.md, known limits), which they must not hide and the rest
## must not provoke. The allocation counts run again without -race (the
## race detector empties sync.Pool, so a test that counts a pooled path's
## allocations skips under it).
test: vet fmt-check build redis-server acceptance-deps widget-deps $(TEST_OLLAMA_CLI)
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m -skip '^TestClusterProcesses' ./...
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 10m -run '^TestClusterProcesses' ./cmd/moltbot/
	$(GO) test -count=1 -timeout 10m -run 'Cluster' ./actors/
	$(GO) test -count=1 -timeout 5m -run '^TestWidgetCluster$$' ./cmd/moltbot/
	$(GO) test -count=1 -timeout 5m -run 'Allocs' ./skills/... ./inference/... ./chat/ ./internal/h1/
	$(MAKE) --no-print-directory test-edge

## test-edge: the edge build's own tests (the packages with edge stand-ins:
## actors, cluster, cmd/moltbot), short, so that build cannot rot
test-edge:
	$(GO) test -tags $(EDGE_TAGS) -count=1 -short -timeout 5m -run 'Edge|TestTurnStreamsAndPersists|TestHelpAndVersion|TestBadConfigExits' $(EDGE_PKGS)

## redis-server: Debian's redis-server, for the output cache's Redis tests
## (each starts its own on a free loopback port). Where it cannot be
## installed (no apt, no root) make test goes on and those tests skip,
## saying why.
redis-server:
	@command -v redis-server >/dev/null || { sudo -n true 2>/dev/null && SUDO=sudo; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; } || \
	  echo "make: redis-server could not be installed; the cache's Redis tests will skip"

## acceptance: only the acceptance tests: real clients (npm openai,
## @anthropic-ai/sdk, ollama; the ollama CLI) against a built node
acceptance: acceptance-deps
	$(GO) test -count=1 -timeout 10m -v ./test/acceptance/

## acceptance-deps: npm ci in each Node harness (test/acceptance/js, and
## the channels' official clients under test/channels/*) when its
## node_modules is missing or older than its lock (nothing to do
## otherwise; without node, a note: those tests skip)
acceptance-deps:
	@if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
	  echo "acceptance-deps: no node or npm on PATH: the npm client acceptance tests will skip (they need Node 20+)"; \
	else for d in $(NPM_DIRS); do \
	  if [ ! -f $$d/node_modules/.package-lock.json ] || \
	     [ $$d/package-lock.json -nt $$d/node_modules/.package-lock.json ] || \
	     [ $$d/package.json -nt $$d/node_modules/.package-lock.json ]; then \
	    echo "npm ci in $$d"; (cd $$d && npm ci --no-audit --no-fund --loglevel=error) || exit 1; \
	  fi; \
	done; fi

## widget-deps: npm ci in test/widget (jsdom) when node_modules is missing
## or older than the lock; without node, a note: the widget's DOM tests skip
widget-deps:
	@if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
	  echo "widget-deps: no node or npm on PATH: the widget's DOM tests will skip (they need Node 20+)"; \
	elif [ ! -f $(WIDGET_JS)/node_modules/.package-lock.json ] || \
	     [ $(WIDGET_JS)/package-lock.json -nt $(WIDGET_JS)/node_modules/.package-lock.json ] || \
	     [ $(WIDGET_JS)/package.json -nt $(WIDGET_JS)/node_modules/.package-lock.json ]; then \
	  echo "npm ci in $(WIDGET_JS)"; cd $(WIDGET_JS) && npm ci --no-audit --no-fund --loglevel=error; \
	fi

## ollama-cli: the ollama binary built from its Go module, at the version
## go.mod requires, into $(OLLAMA_CLI_DIR)/bin (cgo, about 8 minutes cold;
## nothing to do when it is there)
ollama-cli:
	scripts/ollama-cli/build.sh $(OLLAMA_CLI_DIR) $$($(GO) list -m -f '{{.Version}}' github.com/ollama/ollama)

ollama-cli-try:
	@$(MAKE) --no-print-directory ollama-cli || echo "make: the ollama CLI could not be built; its acceptance test will skip"

## acceptance-ollama-cli: build the ollama CLI if needed, then run its
## acceptance test (ollama list, show, run, ps against a node)
acceptance-ollama-cli: ollama-cli
	MOLTBOT_OLLAMA_CLI=$(OLLAMA_CLI_DIR)/bin/ollama $(GO) test -count=1 -timeout 10m -run '^TestOllamaCLI$$' -v ./test/acceptance/

vet:
	$(GO) vet ./...
	$(GO) vet -tags $(EDGE_TAGS) $(EDGE_PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

tidy-check:
	$(GO) mod tidy
	git diff --exit-code go.mod go.sum

## lint: vet, formatting, go mod tidy leaves no diff
lint: vet fmt-check tidy-check

## bench: testing.B hot paths, then the end-to-end measurements of BENCHMARKS.md
bench: build build-edge
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./...
	$(GO) run ./bench/measure -bin $(BIN) -edge-bin $(BIN)-edge

## measure: only the end-to-end measurements (binary, ready time, RSS, added
## latency, ..., the floor, the edge figures); MEASURE="-only floor" for one part
measure: build build-edge
	$(GO) run ./bench/measure -bin $(BIN) -edge-bin $(BIN)-edge $(MEASURE)

## fuzz: run each fuzz target for FUZZTIME (default 20s)
FUZZTIME ?= 20s
fuzz:
	@for spec in \
	  configs:FuzzParse inference/sse:FuzzReader storage:FuzzDecode storage:FuzzRecords gateway:FuzzChatCompletions \
	  internal/jsonw:FuzzString inference/openai:FuzzStream inference/openai:FuzzScanChunkMatchesSlow inference/openaiwire:FuzzDecodeChatRequest inference/anthropic:FuzzStream inference/ollama:FuzzStream auth:FuzzAuthenticate auth:FuzzMerge audit:FuzzClean gateway:FuzzAuditQuery inference/sse:FuzzReaderMatchesReference \
	  gateway:FuzzClientAddr gateway:FuzzEdgeHeaders actors:FuzzGuard actors:FuzzPeekEnvelope cluster:FuzzKeyFile \
	  inference/ollama:FuzzDecodeLineMatchesEncodingJSON inference/ollama:FuzzChatMatchesAPIClient inference/ollama:FuzzRequest \
	  cache:FuzzDecodeEntry cache/resp:FuzzReadReply \
	  channels/discord:FuzzGatewayPayload channels/discord:FuzzInteraction channels/discord:FuzzAddress \
	  channels/telegram:FuzzParseUpdate channels/feishu:FuzzOpen; do \
	  pkg=$${spec%%:*}; fn=$${spec##*:}; \
	  echo "== $$pkg $$fn"; $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) ./$$pkg || exit 1; \
	done

## cross: release binaries for the edge and desktop targets in dist/: the
## node and its skills worker (install it beside moltbot as moltbot-skills,
## or name it in skills.worker)
cross:
	@mkdir -p dist
	@for t in linux/amd64 linux/arm64 linux/arm/7 darwin/arm64 windows/amd64; do \
	  os=$${t%%/*}; rest=$${t#*/}; arch=$${rest%%/*}; arm=$${rest#*/}; \
	  out=dist/moltbot-$$os-$$arch$$( [ "$$arch" = arm ] && echo v$$arm )$$( [ "$$os" = windows ] && echo .exe ); \
	  echo "build $$out"; \
	  GOOS=$$os GOARCH=$$arch GOARM=$$( [ "$$arch" = arm ] && echo $$arm ) \
	    $(GO) build -trimpath -tags $(TAGS) -ldflags "$(LDFLAGS)" -o $$out ./cmd/moltbot || exit 1; \
	  wout=$$(echo $$out | sed 's|dist/moltbot-|dist/moltbot-skills-|'); echo "build $$wout"; \
	  GOOS=$$os GOARCH=$$arch GOARM=$$( [ "$$arch" = arm ] && echo $$arm ) \
	    $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $$wout ./cmd/moltbot-skills || exit 1; \
	done

## proto: regenerate actors/pb (protoc from Debian's protobuf-compiler,
## protoc-gen-go at the version of google.golang.org/protobuf in go.mod)
PROTOC_GEN_GO := $(shell $(GO) list -m -f '{{.Version}}' google.golang.org/protobuf)
proto:
	@command -v protoc >/dev/null || { sudo -n true 2>/dev/null && SUDO=sudo; $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq protobuf-compiler; }
	GOBIN=$(CURDIR)/bin $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO)
	PATH=$(CURDIR)/bin:$$PATH protoc --go_out=. --go_opt=paths=source_relative actors/pb/moltbot.proto

clean:
	rm -rf bin dist $(RUN_DIR)
