# crisp — a Kubernetes CRI runtime. `make run` and `make test` do all set-up.

GO       ?= go
BIN      := $(CURDIR)/bin
# go.podman.io/{image,storage} build without cgo with these tags (see docs/).
TAGS     := containers_image_openpgp,exclude_graphdriver_btrfs
LDFLAGS  := -X github.com/crisp-cri/crisp/cri.Version=$(shell git describe --always --dirty 2>/dev/null || echo dev)
# Debian packages the daemon and its tests use.
DEBS     := runc conmon runsc containernetworking-plugins iproute2 iptables util-linux busybox-static skopeo systemd
# gVisor's runsc, crisp's untrusted runtime: a pinned snapshot of gVisor's Go
# branch built from the Go module proxy (contrib/build-runsc.sh), cached by
# version outside the clone and installed as $(RUNSC), where crisp's default
# config points; Debian's older runsc (/usr/bin/runsc) stays as a fallback.
# Why this one: README, "gVisor".
RUNSC_VERSION      := v0.0.0-20260905035102-160fafc42237
RUNSC_CACHE        ?= /var/cache/crisp
RUNSC_BUILD        := $(RUNSC_CACHE)/runsc-$(RUNSC_VERSION)/runsc
RUNSC              := /usr/local/sbin/runsc
# crictl, for the end-to-end tests and for operators.
CRICTL_VERSION     := v1.37.0
# kubelet, for the end-to-end test in test/kubelet: built from the Go module
# proxy (test/kubelet/build-kubelet.sh) and cached by version outside the
# clone, so another run or a fresh clone on this machine does not rebuild it.
KUBELET_VERSION    := v1.37.2
KUBELET_CACHE      ?= /var/cache/crisp
KUBELET            := $(KUBELET_CACHE)/kubelet-$(KUBELET_VERSION)/kubelet
# Pinned code generators for `make generate` (protoc itself comes from apt).
PROTOC_GEN_GO      := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2

# `make test` runs the unit tests with -race (which needs cgo) and the
# root-only end-to-end tests in test/, which start the real binaries.
TEST_FLAGS ?= -race -count=1 -timeout 30m

# Fuzz targets of the request validation, and how long each runs: a short
# pass in `make test`, a long one in `make fuzz`.
FUZZ_TARGETS    := FuzzRunPodSandbox FuzzCreateContainer FuzzRequest
FUZZTIME_TEST   ?= 10s
FUZZTIME        ?= 5m

.PHONY: all deps debs runsc build install tools kubelet run unit test lint generate bench bench-scale chaos fuzz fuzz-short clean

all: build

## deps: install the Debian packages crisp needs and the pinned runsc (idempotent, quiet when present)
deps: debs runsc

debs:
	@missing=""; for p in $(DEBS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

## runsc: gVisor's runsc $(RUNSC_VERSION), built once into $(RUNSC_BUILD) (cold: ~2 min on 2 cores) and installed as $(RUNSC)
runsc: debs
	GO=$(GO) contrib/build-runsc.sh $(RUNSC_VERSION) $(RUNSC_BUILD)
	@cmp -s $(RUNSC_BUILD) $(RUNSC) || { install -D -m 0755 $(RUNSC_BUILD) $(RUNSC).new && mv -f $(RUNSC).new $(RUNSC) && echo "installed $(RUNSC) ($(RUNSC_VERSION))"; }

## build: build bin/crispd and bin/crispctl (static, no cgo)
build:
	CGO_ENABLED=0 $(GO) build -tags $(TAGS) -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/crispd ./cmd/crispd
	CGO_ENABLED=0 $(GO) build -tags $(TAGS) -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/crispctl ./cmd/crispctl

## tools: crictl $(CRICTL_VERSION) and kubelet $(KUBELET_VERSION), built from the Go module proxy into bin/
tools: $(BIN)/crictl kubelet
$(BIN)/crictl:
	CGO_ENABLED=0 GOBIN=$(BIN) $(GO) install -ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$(CRICTL_VERSION:v%=%)" \
		sigs.k8s.io/cri-tools/cmd/crictl@$(CRICTL_VERSION)

## kubelet: kubelet $(KUBELET_VERSION) built once into $(KUBELET) (cold: ~5 min on 2 cores; KUBELET_CACHE moves it), linked as bin/kubelet
kubelet:
	GO=$(GO) test/kubelet/build-kubelet.sh $(KUBELET_VERSION) $(KUBELET)
	@mkdir -p $(BIN) && ln -sfn $(KUBELET) $(BIN)/kubelet

## install: crispd and crispctl into /usr/local/bin, the systemd unit into /etc/systemd/system (DESTDIR for packaging)
install: build
	install -D -m 0755 $(BIN)/crispd $(DESTDIR)/usr/local/bin/crispd
	install -D -m 0755 $(BIN)/crispctl $(DESTDIR)/usr/local/bin/crispctl
	install -D -m 0644 contrib/systemd/crisp.service $(DESTDIR)/etc/systemd/system/crisp.service

## run: install deps, build, and run crispd in the foreground with its defaults
run: deps build
	$(BIN)/crispd $(ARGS)

## unit: the quick tests, no root needed
unit:
	CGO_ENABLED=1 $(GO) test -tags $(TAGS) $(TEST_FLAGS) $$($(GO) list ./... | grep -v /test/)

## test: deps, build, lint, then every test (unit with -race, and the end-to-end tests in test/), then a short fuzz pass
test: deps build tools lint
	CGO_ENABLED=1 CRISP_BIN_DIR=$(BIN) $(GO) test -tags $(TAGS) $(TEST_FLAGS) ./...
	$(MAKE) --no-print-directory fuzz-short

## fuzz-short: each fuzz target of cri/validate for $(FUZZTIME_TEST) (part of make test)
# A run that fails without writing a failing input is Go's fuzz coordinator
# missing its own deadline on a loaded machine (golang/go#56238): it is
# run once more, and fails the build if it fails again.
fuzz-short:
	@for t in $(FUZZ_TARGETS); do \
		run() { CGO_ENABLED=1 $(GO) test -tags $(TAGS) -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME_TEST) ./cri/validate/ 2>&1; }; \
		out=$$(run); rc=$$?; echo "$$out"; \
		if [ $$rc -ne 0 ]; then \
			if echo "$$out" | grep -q "Failing input written"; then exit 1; fi; \
			echo "fuzz-short: $$t failed with no failing input written (fuzz coordinator deadline, golang/go#56238); running it again"; \
			run || exit 1; \
		fi; \
	done

## fuzz: each fuzz target of cri/validate for $(FUZZTIME) (new inputs are kept in the Go fuzz cache; a failing one is written to cri/validate/testdata/fuzz)
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		CGO_ENABLED=1 $(GO) test -tags $(TAGS) -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) ./cri/validate/ || exit 1; \
	done

## lint: go vet, a gofmt check and a tidy go.mod
lint:
	CGO_ENABLED=0 $(GO) vet -tags $(TAGS) ./...
	@$(GO) mod tidy -diff || (echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## generate: regenerate the admin service's Go code from cri/adminpb/admin.proto
generate:
	@command -v protoc >/dev/null || (apt-get update -qq && apt-get install -y -qq protobuf-compiler >/dev/null)
	GOBIN=$(BIN) $(GO) install $(PROTOC_GEN_GO)
	GOBIN=$(BIN) $(GO) install $(PROTOC_GEN_GO_GRPC)
	PATH=$(BIN):$$PATH protoc --proto_path=cri/adminpb \
		--go_out=paths=source_relative:cri/adminpb --go-grpc_out=paths=source_relative:cri/adminpb \
		cri/adminpb/admin.proto

## bench: the benchmarks (figures, not pass/fail; root for test/bench and test/kubelet)
bench: deps build kubelet
	CGO_ENABLED=1 $(GO) test -tags $(TAGS) -run '^$$' -bench . -benchmem ./db/
	CGO_ENABLED=1 CRISP_BIN_DIR=$(BIN) $(GO) test -tags $(TAGS) -run '^$$' -bench . -benchtime 20x ./test/bench/
	CGO_ENABLED=1 CRISP_BIN_DIR=$(BIN) $(GO) test -tags $(TAGS) -run '^$$' -bench . -benchtime 3x ./test/kubelet/

## bench-scale: the scale benchmark (test/scale) against a private crispd: SCALE_PODS x SCALE_CONTAINERS running busybox containers, lists, stats, a burst, restarts, memory, cleanup (root; figures, not pass/fail; SCALE_ARGS adds flags, e.g. -json out.json; docs/bench-scale.md)
SCALE_PODS       ?= 100
SCALE_CONTAINERS ?= 5
bench-scale: deps build
	CGO_ENABLED=0 $(GO) build -tags $(TAGS) -o $(BIN)/scale ./test/scale
	$(BIN)/scale -start-crispd $(BIN)/crispd -pods $(SCALE_PODS) -containers $(SCALE_CONTAINERS) $(SCALE_ARGS)

## chaos: the chaos test alone, longer: 500 kill -9 iterations of the mixed runc + gVisor workload (CRISP_CHAOS_ITERATIONS, CRISP_CHAOS_SEED override; CRISP_CHAOS_RUNSC=0 leaves gVisor out; root; it builds its own crispd with failpoints)
chaos: deps
	CGO_ENABLED=1 CRISP_CHAOS_ITERATIONS=$${CRISP_CHAOS_ITERATIONS:-500} \
		$(GO) test -tags $(TAGS) -count=1 -timeout 3h -v -run '^TestChaos$$' ./test/chaos/

clean:
	rm -rf $(BIN)
