# mdfast: see README.md. Every target installs what it needs (scripts/deps.sh).
SHELL := /bin/bash
GO    ?= go
# Pinned toolchain for the XDP program: Debian 12's clang 14. `make generate`
# must reproduce the committed bpf2go output byte for byte with it.
CLANG ?= clang-14
BPF_CFLAGS := -O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu
PKGS  := ./...
export CGO_ENABLED ?= 1

.PHONY: all build test unit lint vet staticcheck generate check-generate deps bench demo fuzz clean

all: build

deps:
	@./scripts/deps.sh

build:
	$(GO) build $(PKGS)
	$(GO) build -o bin/ ./cmd/...

## test: what CI runs. vet, staticcheck, bpf2go reproducibility, race tests
## (privileged tests included when run as root).
test: deps lint check-generate unit

unit:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

lint: vet staticcheck

vet:
	$(GO) vet $(PKGS)

staticcheck:
	$(GO) tool staticcheck $(PKGS)

generate:
	cd bpf && BPF2GO_CC=$(CLANG) BPF2GO_CFLAGS="$(BPF_CFLAGS)" $(GO) generate ./...

check-generate: generate
	@git diff --exit-code -- bpf/ || { echo "bpf2go output differs from the committed files: run 'make generate' and commit" >&2; exit 1; }

fuzz:
	@for t in $$(grep -rhoE '^func Fuzz[A-Za-z0-9_]+' --include='*_test.go' internal | sed 's/func //' | sort -u); do \
		pkg=$$(grep -rlE "^func $$t\(" --include='*_test.go' internal | head -1 | xargs dirname); \
		echo "== $$pkg $$t"; $(GO) test ./$$pkg -run '^$$' -fuzz "^$$t$$" -fuzztime $${FUZZTIME:-30s} || exit 1; \
	done

bench:
	@echo "make bench: the benchmark driver (bench/, issue 8) is not built yet" >&2; exit 1

demo:
	@echo "make demo: the demo (cmd/mdfast wiring, issue 7) is not built yet" >&2; exit 1

clean:
	rm -rf bin
