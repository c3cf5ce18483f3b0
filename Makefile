# crtool — see README.md. Every target that needs system packages runs
# `make deps` first; it is idempotent.

export PATH := /usr/local/go/bin:$(PATH)
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
BIN     := bin/crtool
# Integration tests build containers and run CRIU: give them room.
TESTFLAGS ?= -count=1 -timeout 45m

.PHONY: all deps deps-podman deps-zdtm build demo test unit integration zdtm clean-host lint fuzz bench clean man completion install

# The run's start: scripts/clean-host.sh leaves what is newer alone.
CRTOOL_RUN_START ?= $(shell date +%s)
export CRTOOL_RUN_START

# The integration tests hold /run/crtool-test.lock (one suite at a time on
# this host; taken unless the caller holds it) and start from a host as
# fresh as CI's: scripts/clean-host.sh removes what earlier runs and Podman
# left. The suites (test/ and test/zdtm) run one after the other.
INTEGRATION = scripts/test-lock.sh sh -c 'scripts/clean-host.sh && CRTOOL_BIN=$(CURDIR)/$(BIN) $(GO) test $(TESTFLAGS) -p 1 -v ./test/...'

all: build

deps:
	scripts/deps.sh

deps-podman:
	scripts/deps.sh podman

deps-zdtm:
	scripts/deps.sh zdtm

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/crtool

# The manual page and the completion scripts are generated from the
# commands and flags of the binary, never written by hand.
PREFIX  ?= /usr/local
DESTDIR ?=
MAN     := bin/crtool.8
COMPLETIONS := bin/completion/crtool.bash bin/completion/_crtool bin/completion/crtool.fish

man: build
	$(BIN) man > $(MAN)

completion: build
	mkdir -p bin/completion
	$(BIN) completion bash > bin/completion/crtool.bash
	$(BIN) completion zsh > bin/completion/_crtool
	$(BIN) completion fish > bin/completion/crtool.fish

install: build man completion
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/crtool
	install -D -m 0644 $(MAN) $(DESTDIR)$(PREFIX)/share/man/man8/crtool.8
	install -D -m 0644 bin/completion/crtool.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/crtool
	install -D -m 0644 bin/completion/_crtool $(DESTDIR)$(PREFIX)/share/zsh/vendor-completions/_crtool
	install -D -m 0644 bin/completion/crtool.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/crtool.fish

demo: deps build
	scripts/demo.sh $(BIN)

# golangci-lint is pinned: a new release may add checks that fail CI.
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := bin/golangci-lint-$(GOLANGCI_LINT_VERSION)

$(GOLANGCI_LINT):
	mkdir -p bin/.lint
	GOBIN=$(CURDIR)/bin/.lint $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv bin/.lint/golangci-lint $@

# lint: formatting, vet, the package edges of README's Layout, and
# golangci-lint (errorlint, unused, depguard, goimports; .golangci.yml).
lint: $(GOLANGCI_LINT)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	scripts/check-edges.sh
	$(GOLANGCI_LINT) run ./...

# Unit tests: every package but the integration suites under test/.
UNIT_PKGS = $$($(GO) list ./... | grep -v '/test\(/\|$$\)')

unit:
	$(GO) test $(TESTFLAGS) $(UNIT_PKGS)

integration: deps-zdtm build
	$(INTEGRATION)

# zdtm runs CRIU's own zdtm tests (test/zdtm/selection.txt) through crtool,
# with runc checkpoint/restore as the control; see test/zdtm/README.md.
# make integration and make test include it.
zdtm: deps-zdtm build
	scripts/test-lock.sh sh -c 'CRTOOL_BIN=$(CURDIR)/$(BIN) $(GO) test $(TESTFLAGS) -v ./test/zdtm'

clean-host:
	scripts/clean-host.sh

# test runs everything CI runs: lint, unit tests, a short fuzzing round,
# integration tests and CRIU's zdtm tests on a cleaned host.
test: deps deps-podman deps-zdtm lint build
	$(GO) test $(TESTFLAGS) $(UNIT_PKGS)
	$(MAKE) fuzz FUZZTIME=10s
	$(INTEGRATION)

# bench measures crtool against runc checkpoint + tar and Podman, as root,
# for minutes per size; never part of test. Pass options through BENCHFLAGS,
# e.g. make bench BENCHFLAGS='-sizes 64,512 -runs 3 -json bench.json'.
BENCHFLAGS ?=
bench: deps deps-podman build
	$(GO) build -trimpath -o bin/crtool-bench ./cmd/crtool-bench
	bin/crtool-bench -crtool $(CURDIR)/$(BIN) $(BENCHFLAGS)

clean:
	rm -rf bin

# fuzz runs every fuzz target for FUZZTIME each (CI runs a short round).
FUZZTIME ?= 10s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzExtract$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./internal/archive
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeImage$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./inspect
	$(GO) test -run '^$$' -fuzz '^FuzzImages$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./inspect
	$(GO) test -run '^$$' -fuzz '^FuzzCollectArchive$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./inspect
	$(GO) test -run '^$$' -fuzz '^FuzzCheckMetadata$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./internal/trust
	$(GO) test -run '^$$' -fuzz '^FuzzCheckForeign$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./internal/trust
