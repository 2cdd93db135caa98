# Parley: make test, make run. See README.md.

# Use the Go toolchain at /usr/local/go/bin when go is not already on PATH.
ifeq ($(shell command -v go 2>/dev/null),)
export PATH := $(PATH):/usr/local/go/bin
endif

GO      ?= go
BIN     := $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

# Go tests and vet build without the web UI's assets (web/dist), which npm builds.
TAGS := -tags noassets

# Extra flags for make bench, e.g. BENCHFLAGS='-benchtime=3x -count=5'.
BENCHFLAGS ?=
# Arguments for make run, e.g. ARGS='--data-dir /tmp/alice'.
ARGS ?=

PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO         := $(BIN)/protoc-gen-go

# Go files gofmt checks: all but npm's and generated ones ("// Code generated ... DO NOT EDIT.").
GOFILES = $(shell find . -name '*.go' -not -path './web/node_modules/*' -not -path './.git/*' -not -path './bin/*' \
	| xargs -r grep -L '^// Code generated .* DO NOT EDIT\.$$')

.PHONY: test go-test bench run build proto fmt fmt-check vet clean ui web-test e2e screenshots chromium api api-check

# The end-to-end tests of cmd/parley build the binary with -tags noassets,parleytest
# themselves; the second vet and test cover the files only that tag compiles (the
# test-only settings of parley run and their unit tests).
# make test also runs the web UI's Vitest tests and its end-to-end test in
# Chromium (web-test, e2e below); go-test alone needs no npm.
test: go-test api-check web-test e2e

go-test: fmt-check
	$(GO) vet $(TAGS) ./...
	$(GO) vet $(TAGS),parleytest ./cmd/parley/
	$(GO) test $(TAGS) -race -count=1 ./...
	# The 33-host directory network is too slow under -race on two cores.
	$(GO) test $(TAGS) -count=1 -run '^TestDirectoryNetwork$$' ./node/
	$(GO) test $(TAGS),parleytest -race -count=1 -run '^TestTestSettings' ./cmd/parley/

# The network benchmarks (node, cmd/parley) run a fixed number of messages, so
# that connection set-up and warm-up do not dominate a one-second run.
NETBENCHTIME ?= 400x
# The simulated 500-member group (node's BenchmarkGroupSim500) runs on its own,
# with fewer messages, so that it stays under about three minutes on two cores;
# a 500-member rekey (BenchmarkGroupRekey500) takes seconds an op: a few ops.
GROUPSIMBENCHTIME ?= 200x
REKEYBENCHTIME ?= 3x

bench:
	$(GO) test $(TAGS) -run '^$$' -bench . -benchmem $(BENCHFLAGS) $$($(GO) list ./... | grep -v -e /node -e /cmd/)
	$(GO) test $(TAGS) -run '^$$' -bench . -skip '^(BenchmarkGroupSim500|BenchmarkGroupRekey500)$$' -benchmem -benchtime=$(NETBENCHTIME) $(BENCHFLAGS) ./node/... ./cmd/...
	$(GO) test $(TAGS) -run '^$$' -bench '^BenchmarkGroupSim500$$' -benchmem -benchtime=$(GROUPSIMBENCHTIME) $(BENCHFLAGS) ./node/
	$(GO) test $(TAGS) -run '^$$' -bench '^BenchmarkGroupRekey500$$' -benchtime=$(REKEYBENCHTIME) $(BENCHFLAGS) ./node/

# bench-report runs make bench with PARLEY_BENCH_DIR set, so that the
# benchmarks also leave their samples as records, and then cmd/benchreport,
# which writes $(BENCH_OUT)/README.md (machine, targets, tables) and its
# PNG figures. When make bench fails, the report is left as it was, and
# the go test output and records stay in the temporary directory.
BENCH_OUT ?= docs/bench
.PHONY: bench-report
bench-report:
	@set -e; tmp=$$(mktemp -d); \
	load() { if [ -r /proc/loadavg ]; then cut -d' ' -f1-3 /proc/loadavg; else uptime; fi; }; \
	date=$$(date -u +%Y-%m-%dT%H:%M:%SZ); start=$$(load); \
	echo "bench-report: load average $$start; records in $$tmp/records"; \
	{ PARLEY_BENCH_DIR=$$tmp/records $(MAKE) --no-print-directory bench || echo $$? >$$tmp/failed; } 2>&1 | tee $$tmp/bench.txt; \
	end=$$(load); \
	if [ -e $$tmp/failed ]; then \
		echo "bench-report: make bench failed; its output and records are in $$tmp" >&2; exit 1; \
	fi; \
	$(GO) run ./cmd/benchreport -records $$tmp/records -bench-output $$tmp/bench.txt -out $(BENCH_OUT) \
		-nproc "$$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)" -load-start "$$start" -load-end "$$end" \
		-rev '$(VERSION)' -date "$$date"; \
	rm -rf $$tmp

# A release build embeds the web UI (web/dist), built first when missing or stale.
build: ui
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/parley ./cmd/parley

# ---- The web UI (web/: React + TypeScript + Vite) ----

NPM      ?= npm
CHROMIUM ?= /usr/bin/chromium
# The UI's sources: a change to any of them rebuilds web/dist.
WEB_SRC   = $(shell find web/src web/public -type f 2>/dev/null) \
	web/index.html web/vite.config.ts web/tsconfig.json web/package.json web/package-lock.json
# npm ci runs again when the lock file changes.
WEB_DEPS := web/node_modules/.parley-npm-ci

$(WEB_DEPS): web/package.json web/package-lock.json
	@command -v $(NPM) >/dev/null 2>&1 || { \
		echo "make: npm not found; install Node.js 20 or later with npm (apt-get install nodejs npm)" >&2; exit 1; }
	cd web && $(NPM) ci --no-audit --no-fund
	@touch $@

web/dist/index.html: $(WEB_DEPS) $(WEB_SRC)
	cd web && $(NPM) run build

# ui builds web/dist when it is missing or older than a source.
ui: web/dist/index.html

# web-test runs the Vitest unit tests (and type-checks the app).
web-test: $(WEB_DEPS)
	cd web && npx tsc --noEmit -p .
	cd web && $(NPM) test

# ---- The API contract ----

# api regenerates what is generated from the Go types and the route table of
# package api: api/openapi.json (api/internal/openapigen, with
# invopop/jsonschema) and, from it, the web UI's TypeScript types
# (openapi-typescript), which web/src/api.ts calls through openapi-fetch.
API_TS := web/src/api-types.gen.ts
api: $(WEB_DEPS)
	$(GO) run ./api/internal/openapigen -o api/openapi.json
	cd web && npx openapi-typescript ../api/openapi.json -o src/api-types.gen.ts

# api-check regenerates both into a temporary directory and fails when a
# committed one differs (go-test checks openapi.json too, without npm).
api-check: $(WEB_DEPS)
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(GO) run ./api/internal/openapigen -o "$$tmp/openapi.json"; \
	(cd web && npx openapi-typescript "$$tmp/openapi.json" -o "$$tmp/api-types.gen.ts" >/dev/null); \
	if ! diff -u api/openapi.json "$$tmp/openapi.json" || ! diff -u $(API_TS) "$$tmp/api-types.gen.ts"; then \
		echo "make api-check: generated API files are stale; run make api" >&2; exit 1; \
	fi

# chromium makes sure Chromium is there for the browser tests: as root it
# installs Debian's package, otherwise it stops with the command to run.
chromium:
	@if [ ! -x "$(CHROMIUM)" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "make: installing Chromium for the browser tests (apt-get install chromium)"; \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; \
		else \
			echo "make: Chromium not found at $(CHROMIUM); install it (sudo apt-get install chromium) or set CHROMIUM=/path/to/chromium" >&2; \
			exit 1; \
		fi; \
	fi

# e2e runs the end-to-end test: two `parley run` nodes on 127.0.0.1, built
# with the parleytest tag (cheap test keys) and the real UI, driven through
# headless Chromium by playwright-core.
E2E_BIN := $(BIN)/parley-e2e
e2e: ui chromium
	$(GO) build -tags parleytest -o $(E2E_BIN) ./cmd/parley
	cd web && PARLEY_BIN=$(E2E_BIN) CHROMIUM=$(CHROMIUM) node --test --test-reporter=spec e2e/

# screenshots runs the end-to-end test and keeps its screenshots of the main
# screens in docs/screenshots/ (shown in the README).
screenshots: ui chromium
	$(GO) build -tags parleytest -o $(E2E_BIN) ./cmd/parley
	cd web && PARLEY_BIN=$(E2E_BIN) CHROMIUM=$(CHROMIUM) PARLEY_SCREENSHOTS=$(CURDIR)/docs/screenshots \
		node --test --test-reporter=spec e2e/

# Runs a node on the default data directory (~/.parley) with the API and UI on
# http://127.0.0.1:7733/ (parley prints the URL) until Ctrl-C.
# ARGS='--data-dir /tmp/bob --api 127.0.0.1:7744 --listen /ip4/127.0.0.1/tcp/7745' runs a second one.
run: build
	./bin/parley run $(ARGS)

proto: $(PROTOC_GEN_GO)
	@command -v protoc >/dev/null 2>&1 || { \
		echo "make proto: protoc not found; install it with: apt-get install protobuf-compiler" >&2; exit 1; }
	protoc --plugin=protoc-gen-go=$(PROTOC_GEN_GO) \
		--go_out=. --go_opt=module=github.com/parley-chat/parley protocol/pb/*.proto node/mailbox/pb/*.proto

# Installs the pinned protoc-gen-go into ./bin, also replacing one of another version.
$(PROTOC_GEN_GO): FORCE
	@if [ "$$($@ --version 2>/dev/null)" != "protoc-gen-go $(PROTOC_GEN_GO_VERSION)" ]; then \
		echo "GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)"; \
		GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION); \
	fi

fmt:
	@files="$(GOFILES)"; [ -z "$$files" ] || gofmt -l -w $$files

fmt-check:
	@files="$(GOFILES)"; bad=$$( [ -z "$$files" ] || gofmt -l $$files ); \
	if [ -n "$$bad" ]; then echo "gofmt needed (run make fmt):" >&2; echo "$$bad" >&2; exit 1; fi

vet:
	$(GO) vet $(TAGS) ./...
	$(GO) vet $(TAGS),parleytest ./cmd/parley/

clean:
	rm -rf bin coverage.out cover.out *.coverprofile
	find web/dist -mindepth 1 ! -name .keep -delete 2>/dev/null || true

.PHONY: FORCE
FORCE:
