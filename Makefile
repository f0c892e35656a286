# scim-agent: `make demo` shows it working, `make test` runs every test.
# Both install Debian's mariadb-server first when mariadbd is missing.

GO      ?= go
BIN     := bin/scim-agent
PKGS    := ./...

.PHONY: all build test bench demo vet fmt ensure-mariadb ensure-promtool clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=auto -o $(BIN) ./cmd/scim-agent

# mariadbd and mariadb-install-db come from Debian's mariadb-server. The
# tests start private servers of their own; the package's own service is
# never used or reconfigured.
ensure-mariadb:
	@if command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]; then exit 0; fi; \
	echo "mariadbd not found: installing Debian's mariadb-server"; \
	if [ "$$(id -u)" != 0 ]; then SUDO=sudo; fi; \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mariadb-server

# promtool checks deploy/prometheus/alerts.yaml and runs its rule unit
# tests. Where it is not installed, it is taken out of Debian's prometheus
# package into bin/ without installing the package (which would start a
# Prometheus server).
PROMTOOL ?= $(shell command -v promtool 2>/dev/null || echo bin/promtool)

ensure-promtool:
	@if [ -x "$(PROMTOOL)" ]; then exit 0; fi; \
	echo "promtool not found: extracting it from Debian's prometheus package into bin/"; \
	set -e; dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; \
	if ! (cd "$$dir" && apt-get download -q prometheus >/dev/null 2>&1); then \
		if [ "$$(id -u)" != 0 ]; then SUDO=sudo; fi; \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null; \
		(cd "$$dir" && apt-get download -q prometheus); \
	fi; \
	dpkg-deb -x "$$dir"/prometheus_*.deb "$$dir/x"; \
	mkdir -p "$$(dirname "$(PROMTOOL)")"; \
	cp "$$dir/x/usr/bin/promtool" "$(PROMTOOL)"

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet $(PKGS)

# A private MariaDB, the tests' SCIM server and the agent, with scripted
# Drupal-style changes shown as they reach the server. Ctrl-C stops it all;
# DEMO_UNATTENDED=1 runs the script, checks the result and exits.
demo: build ensure-mariadb
	$(GO) run ./cmd/demo -agent $(BIN)

test: ensure-mariadb ensure-promtool vet
	PROMTOOL=$(abspath $(PROMTOOL)) $(GO) test -count=1 -timeout 15m $(PKGS)

# Micro-benchmarks run for the default time; the end-to-end backlog
# benchmarks drain a fixed backlog of 2000 changes (their set-up is not
# timed, so an open-ended b.N would grow without bound); the measurements
# of deploy/measure run the agent's binary as a process of its own (the
# SCIM server's capacity against the agent's, syncs of 10,000 and 100,000
# users with 100,000 changes pending, the commit-to-request delay), once
# each: about 5-8 minutes in all on a 2-core machine.
MEASURED := Provision|SyncScale|CommitToRequest

bench: ensure-mariadb
	$(GO) test -run '^$$' -bench . -skip 'Backlog|$(MEASURED)' -benchmem -count=1 $(PKGS)
	$(GO) test -run '^$$' -bench 'Backlog' -benchtime=2000x -benchmem -count=1 ./agent/
	$(GO) test -run '^$$' -bench '$(MEASURED)' -benchtime=1x -count=1 -timeout 60m ./deploy/measure/

clean:
	rm -rf bin
