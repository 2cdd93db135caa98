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

.PHONY: test bench run build proto fmt fmt-check vet clean

# The end-to-end tests of cmd/parley build the binary with -tags noassets,parleytest
# themselves; the second vet and test cover the files only that tag compiles (the
# test-only settings of parley run and their unit tests).
test: fmt-check
	$(GO) vet $(TAGS) ./...
	$(GO) vet $(TAGS),parleytest ./cmd/parley/
	$(GO) test $(TAGS) -race -count=1 ./...
	$(GO) test $(TAGS),parleytest -race -count=1 -run '^TestTestSettings' ./cmd/parley/

# The network benchmarks (node, cmd/parley) run a fixed number of messages, so
# that connection set-up and warm-up do not dominate a one-second run.
NETBENCHTIME ?= 400x

bench:
	$(GO) test $(TAGS) -run '^$$' -bench . -benchmem $(BENCHFLAGS) $$($(GO) list ./... | grep -v -e /node -e /cmd/)
	$(GO) test $(TAGS) -run '^$$' -bench . -benchmem -benchtime=$(NETBENCHTIME) $(BENCHFLAGS) ./node/... ./cmd/...

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/parley ./cmd/parley

# Runs a node on the default data directory (~/.parley) with the API and UI on
# http://127.0.0.1:7733/ (parley prints the URL) until Ctrl-C.
# ARGS='--data-dir /tmp/bob --api 127.0.0.1:7744 --listen /ip4/127.0.0.1/tcp/7745' runs a second one.
run: build
	./bin/parley run $(ARGS)

proto: $(PROTOC_GEN_GO)
	@command -v protoc >/dev/null 2>&1 || { \
		echo "make proto: protoc not found; install it with: apt-get install protobuf-compiler" >&2; exit 1; }
	protoc --plugin=protoc-gen-go=$(PROTOC_GEN_GO) \
		--go_out=. --go_opt=module=github.com/parley-chat/parley protocol/pb/*.proto

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

.PHONY: FORCE
FORCE:
