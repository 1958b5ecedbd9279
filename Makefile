# mdfast: see README.md. Every target installs what it needs (scripts/deps.sh).
SHELL := /bin/bash
GO    ?= go
# Pinned toolchain for the XDP program: clang 14 and llvm-strip 14 (Debian
# 12's). `make generate` must reproduce the committed bpf2go output byte for
# byte with them on any Linux: -nostdinc keeps the host's headers out, and
# the only headers classify.c sees are bpf/include's (see its README.md).
# bpf2go runs clang in bpf/, hence -Iinclude; it adds -target bpfel (gen.go).
CLANG ?= clang-14
LLVM_STRIP ?= llvm-strip-14
BPF_CFLAGS := -O2 -g -Wall -Werror -nostdinc -Iinclude
# Every file bpf2go writes (gen.go: one target, bpfel): check-generate
# compares these and nothing else in bpf/.
BPF_GENERATED := bpf/classify_bpfel.go bpf/classify_bpfel.o
PKGS  := ./...
export CGO_ENABLED ?= 1

.PHONY: all build test unit lint vet staticcheck check-tidy check-cross generate check-generate deps bench bench-ir demo fuzz clean

all: build

deps:
	@./scripts/deps.sh

build:
	$(GO) build $(PKGS)
	$(GO) build -o bin/ ./cmd/...

## test: what CI runs. vet, staticcheck, bpf2go reproducibility, race tests
## (privileged tests included when run as root).
test: deps lint check-tidy check-generate check-cross unit

# The attack tests (real daemons under floods, timing goals) run alone,
# after the rest: sharing the two cores with other packages' tests would
# measure the neighbours, not the daemons.
unit:
	$(GO) test -race -count=1 -timeout 20m $$($(GO) list $(PKGS) | grep -v /internal/attacktest)
	$(GO) test -race -count=1 -timeout 10m ./internal/attacktest/

lint: vet staticcheck

vet:
	$(GO) vet $(PKGS)

staticcheck:
	$(GO) tool staticcheck $(PKGS)

check-tidy:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run 'go mod tidy' and commit" >&2; exit 1; }

# Packages with no Linux-only reason to fail build on other systems: the
# Key Distributor, the tunnel, the DTLS stack, the endpoint package and
# the crypto they share (the Media Distributor's data plane is Linux only).
CROSS_PKGS := ./cmd/keydist ./internal/keydist ./internal/tunnel ./internal/dtls ./internal/dtlsmsg \
	./internal/ekt ./internal/double ./internal/srtpfast ./internal/keytable ./internal/fairq ./internal/ratelog ./perc

check-cross:
	@for os in darwin windows; do CGO_ENABLED=0 GOOS=$$os $(GO) build $(CROSS_PKGS) || { echo "GOOS=$$os build failed" >&2; exit 1; }; done

generate:
	cd bpf && BPF2GO_CC=$(CLANG) BPF2GO_STRIP=$(LLVM_STRIP) BPF2GO_CFLAGS="$(BPF_CFLAGS)" $(GO) generate ./...

# Regenerates, then compares only the generated files with the committed
# ones (HEAD): an edit elsewhere in bpf/ (classify.c, a test) is not a
# failure, a generated file that does not match what is committed is.
check-generate: generate
	@git ls-files --error-unmatch -- $(BPF_GENERATED) >/dev/null && git diff --exit-code HEAD -- $(BPF_GENERATED) || { echo "bpf2go output differs from the committed files: run 'make generate' and commit" >&2; exit 1; }

fuzz:
	@for t in $$(grep -rhoE '^func Fuzz[A-Za-z0-9_]+' --include='*_test.go' internal perc | sed 's/func //' | sort -u); do \
		pkg=$$(grep -rlE "^func $$t\(" --include='*_test.go' internal perc | head -1 | xargs dirname); \
		echo "== $$pkg $$t"; $(GO) test ./$$pkg -run '^$$' -fuzz "^$$t$$" -fuzztime $${FUZZTIME:-30s} || exit 1; \
	done

## bench: as root, measures mdfast (XDP native, XDP generic, socket, the
## whole system), the baseline forwarder and the reflectors (the generator's
## calibration: socket, and AF_XDP in each XDP mode) in network namespaces, in interleaved rounds; writes
## bench/results/latest.* (BENCH_QUICK=1: a subset in 3 rounds, about five
## minutes; BENCH_PATHS=a,b limits paths or adds the wait variants, e.g.
## mdfast-xdp-native-poll; BENCH_NICE=n the niceness, default -10;
## BENCH_MQ=1: 2 queues and 2 workers against 1, in 3 rounds;
## BENCH_CASCADE=1: 1→4 on one MD against the same conference over two MDs
## joined by a link, in 3 rounds).
bench: deps
	@[ "$$(id -u)" -eq 0 ] || { echo "make bench: run as root (network namespaces, XDP, taskset)" >&2; exit 1; }
	@command -v taskset >/dev/null || { echo "make bench: taskset (util-linux) is missing" >&2; exit 1; }
	$(GO) build -o bin/bench/ ./bench/mdharness ./bench/baseline ./bench/loadgen ./bench/reflector ./bench/run ./cmd/mdfast ./cmd/keydist
	./bin/bench/run -bin bin/bench -out bench/results $${BENCH_PATHS:+-paths $$BENCH_PATHS} $${BENCH_NICE:+-nice $$BENCH_NICE}

## bench-ir: instructions per forwarded packet under callgrind (valgrind,
## installed by deps): mdfast's worker against raw crypto/cipher AES-GCM and
## pion/srtp, fan-out 1, 4, 16, 160 and 1200 B, 1 sender and 4 senders
## interleaved; writes bench/results/ir-* and ir-latest.{md,json}. Needs no
## root; under a minute on 2 cores.
bench-ir: deps
	@command -v valgrind >/dev/null || { echo "make bench-ir: valgrind is missing (scripts/deps.sh installs it as root)" >&2; exit 1; }
	$(GO) test -c -o bin/bench/dataplane.test ./internal/dataplane
	$(GO) build -o bin/bench/ ./bench/ir
	./bin/bench/ir -test bin/bench/dataplane.test -out bench/results

## demo: as root, builds everything and runs keydist, mdfast and three
## endpoints in network namespaces (DEMO_SECONDS, DEMO_PATH, DEMO_ENDPOINTS,
## DEMO_KD_RESTART=1); ends with one "demo: ..." summary line. DEMO_WEB=1:
## prints a URL to open in two browser tabs on this host, which join a
## WebRTC conference through keydist's join endpoint (Ctrl-C ends it).
## DEMO_MDS=3: three MDs on a shared directory in etcd, linked to each
## other, with two KD replicas (DEMO_KDS) on the same etcd.
demo: deps build
	@[ "$$(id -u)" -eq 0 ] || { echo "make demo: run as root (network namespaces, XDP)" >&2; exit 1; }
	DEMO_BIN=bin ./bin/mdfast-demo

clean:
	rm -rf bin
