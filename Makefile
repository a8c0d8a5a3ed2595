# keyquorum. `make test` is the test command CI runs (through .ci/run).
GO        ?= go
# The Go release we build and test with (README, "Go version"): the go
# command fetches it from the module proxy the first time.
export GOTOOLCHAIN = go1.27.3
BIN       ?= bin
PKGS      := ./...
# A duration (30s) or an execution count (20000x). CI uses a count: with a
# duration, go test -fuzz can fail with "context deadline exceeded" when the
# deadline falls while a worker is busy (golang/go#48127), which says nothing
# about our code.
FUZZTIME  ?= 30s

.PHONY: all build test verify vulncheck dev bench bench-scale fuzz clean image deploy-test

include Makefile.proto

all: verify build test

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/keyd ./cmd/keyctl ./cmd/keyagent

# jepsen's suite tests: they need root, ip netns and minutes (jepsen-short
# runs them); its other tests check the checkers and run anywhere.
JEPSEN_ROOT_TESTS := TestBrokenBuildIsCaught|TestTeardownRemovesLeftovers

# How many end-to-end tests run at once, each with its own cluster of
# race-built keyd processes on its own ports (e2e/harness_test.go). Their
# nodes mostly wait, on each other and on the tests' programs: 4 keeps a
# 2-core machine busy without starving Raft (the e2e nodes run a 500 ms
# heartbeat timeout); go test's default is the number of cores.
E2E_PARALLEL ?= 4

# Every package's unit and integration (in-process clusters) tests with the
# race detector, but e2e and jepsen; jepsen's tests that need no root, with
# the race detector too; then the end-to-end tests (real processes). The
# cluster package's tests run in parallel, as many as the machine has
# cores (go test's default), each cluster on its own ports; it takes
# minutes, so it gets more than go test's default timeout of 10 minutes,
# which it passed on a loaded 2-core machine when its tests ran one by one.
test: build
	$(GO) test -count=1 -race -timeout 20m $$($(GO) list ./... | grep -v -e '/e2e$$' -e '/jepsen')
	$(GO) test -count=1 -race -skip '$(JEPSEN_ROOT_TESTS)' ./jepsen/...
	$(GO) test -count=1 -timeout 30m -parallel $(E2E_PARALLEL) ./e2e/...

# Fails on any drift: formatting, vet, staticcheck (staticcheck.conf),
# go.mod tidiness, architecture. staticcheck is installed by .ci/run, at
# the version pinned there.
verify: vulncheck
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	staticcheck $(PKGS)
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }
	$(GO) test -count=1 -run 'TestImportsPointDown|TestNoGrabBagPackages|TestEveryPackageHasDocComment' .
	$(MAKE) proto-check

# The known vulnerabilities the binaries we ship reach, from a local
# database: the Go vulnerability database's OSV files in the module
# golang.org/x/vulndb at VULNDB_VERSION (from the module proxy), indexed by
# its own cmd/indexdb. govulncheck reads the binaries (-mode binary): its
# source mode type-checks the standard library at go.mod's language
# version, which fails on Go 1.27's. govulncheck is installed by .ci/run,
# pinned. To move the database on, set VULNDB_VERSION to a newer
# pseudo-version of the module.
VULNDB_VERSION := v0.0.0-20261105234957-e22db6528018
VULNDB         := $(BIN)/vulndb
vulncheck: build
	rm -rf $(VULNDB)
	osv=$$($(GO) mod download -json golang.org/x/vulndb@$(VULNDB_VERSION) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p')/data/osv; \
	$(GO) run golang.org/x/vulndb/cmd/indexdb@$(VULNDB_VERSION) -vulns "$$osv" -out $(VULNDB)
	for b in keyd keyctl keyagent; do govulncheck -db file://$(abspath $(VULNDB)) -mode binary $(BIN)/$$b || exit 1; done

dev:
	$(GO) run ./cmd/keyd dev

# The node image (deploy/image/Dockerfile): FROM scratch with static keyd
# and keyctl, built from a context of only those and an empty data
# directory, so that nothing is pulled and nothing else is sent to the
# engine.
IMAGE     ?= keyquorum:latest
IMAGE_CTX := $(BIN)/image
image:
	rm -rf $(IMAGE_CTX)
	mkdir -p $(IMAGE_CTX)/data
	chmod 0700 $(IMAGE_CTX)/data
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags=-buildid= -o $(IMAGE_CTX)/ ./cmd/keyd ./cmd/keyctl
	cp deploy/image/Dockerfile $(IMAGE_CTX)/Dockerfile
	docker build --pull=false -t $(IMAGE) $(IMAGE_CTX)

# The deployment tests, not in "make test" (they need root and a Docker
# engine): e2e/compose_test.go builds the image (make image, tag
# keyquorum:e2e) and runs the 3-node compose project; e2e/systemd_test.go
# checks deploy/systemd/keyd.service with systemd-analyze. Each test says
# why it skips when what it needs is missing. About a minute.
deploy-test:
	$(GO) test -count=1 -v -run 'TestCompose|TestSystemdUnit' ./e2e/

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 200x ./shamir/
	$(GO) test -run '^$$' -bench RSA2048 -benchtime 50x -cpu 1 ./cluster/api/
	$(GO) run ./cmd/keybench

# Loads N keys (default 10000) into a local 3-node cluster through the
# public API and measures what grows with them (docs/scale.md).
N ?= 10000
bench-scale: build
	$(GO) run ./cmd/keybench -scale $(N)

# Every fuzz target, FUZZTIME each: every "func FuzzX(" of a _test.go
# file, found by its text rather than by go test -list, which would build
# the test binary of every package, those without a fuzz target too.
fuzz:
	@for dir in $$(grep -rl --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*(' . | xargs -n1 dirname | sort -u); do \
		for target in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$dir/*_test.go); do \
			echo "fuzz $$dir $$target"; \
			$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$dir || exit 1; \
		done; \
	done

clean:
	rm -rf $(BIN)

# The partition and chaos suite (jepsen/README.md); needs root, ip, tc and
# iptables. jepsen-short is what CI runs: the suite's own tests (a keyd
# built with stale reads must be caught), then one run with a fixed seed
# and one with a seed from the clock. jepsen is the campaign: 30 runs of
# 60 s, each nemesis in turn, then three mixed schedules, and again;
# JEPSEN_SEED=N repeats a campaign. Reports go to jepsen/runs/ (a
# campaign's list of runs: campaign.txt). keyd-race is built with the
# clock nemesis' hook (-tags keyquorum_clock_offset, cluster/clock_offset.go).
JEPSEN_SEED  ?= 0
JEPSEN_STAMP := $(shell date +%Y%m%d-%H%M%S)
JEPSEN_OUT   ?= jepsen/runs/$(JEPSEN_STAMP)

.PHONY: jepsen jepsen-short jepsen-bin

jepsen-bin:
	$(GO) build -race -tags keyquorum_clock_offset -o $(BIN)/keyd-race ./cmd/keyd
	$(GO) build -o $(BIN)/jepsen ./jepsen/cmd/jepsen

jepsen: jepsen-bin
	$(BIN)/jepsen campaign -runs 30 -duration 60s -seed $(JEPSEN_SEED) -keyd $(BIN)/keyd-race -out $(JEPSEN_OUT)

jepsen-short: jepsen-bin
	$(GO) test -count=1 -run '$(JEPSEN_ROOT_TESTS)' ./jepsen/
	status=0; \
	$(BIN)/jepsen run -seed 14 -nemesis mixed -duration 50s -keyd $(BIN)/keyd-race -out $(JEPSEN_OUT)/fixed || status=1; \
	$(BIN)/jepsen run -seed 0 -nemesis mixed -duration 50s -keyd $(BIN)/keyd-race -out $(JEPSEN_OUT)/random || status=1; \
	exit $$status
