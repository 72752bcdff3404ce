# Conclave: the two commands are `make run` and `make test`.
SWIFT ?= swift
BIN := .build/debug/conclave
TEST_DB := conclave_test

NODES ?= 3

.PHONY: diff-prosody diff-record chaos fuzz fuzz-build bench-alloc bench-compare bench-scale bench-logins bench-overload certs cluster-dns cluster-dns-stop dns-test run test build build-tests db-start db-stop db-status cluster-up cluster-down cluster-status spec spec-prosody clean-state format help

help:
	@echo "make run             build and run one node (embedded PostgreSQL under .conclave/)"
	@echo "make test            build and run every test"
	@echo "make cluster-up      build and start a local cluster of NODES=$(NODES) nodes in the background"
	@echo "make cluster-status  which nodes of the local cluster run, with their ports"
	@echo "make cluster-down    drain and stop the local cluster"
	@echo "make certs           a local CA and NODES=$(NODES) node certificates in .conclave/tls/"
	@echo "make cluster-dns     serve DNS SRV records for the local cluster (dnsmasq, 127.0.0.1:5353)"
	@echo "make diff-prosody    compare Conclave's stanzas with Prosody's over DIFF_SCENARIOS generated scenarios"
	@echo "make diff-record     record Prosody's transcripts of the fixed set make test replays"
	@echo "make chaos           the churn harness for CHAOS_SECONDS=$(CHAOS_SECONDS) s over the reused database conclave_chaos"
	@echo "make fuzz           run the libFuzzer targets for FUZZ_SECONDS=$(FUZZ_SECONDS) each (docs/fuzzing.md)"

build:
	$(SWIFT) build

build-tests:
	$(SWIFT) build --build-tests

run: build
	./deploy/local/run.sh

db-start:
	./deploy/local/db.sh start

db-stop:
	./deploy/local/db.sh stop

db-status:
	./deploy/local/db.sh status

# A local cluster in the background: node i on 127.0.0.1 ports 5222+10*(i-1) (STARTTLS),
# the next one (Direct TLS) and the one after (node-to-node link); logs and pid files
# in .conclave/cluster/. See deploy/local/cluster.sh.
cluster-up: build
	./deploy/local/cluster.sh up $(NODES)

cluster-down:
	./deploy/local/cluster.sh down

# DNS SRV records for the local cluster, served by dnsmasq on 127.0.0.1:5353
# (CONCLAVE_DNS_PORT; weights in CONCLAVE_DNS_WEIGHTS, e.g. "1 1 2"): clients find the
# nodes with conclave-spec --domain localhost --dns-server 127.0.0.1:5353.
cluster-dns:
	./deploy/local/dns.sh start

cluster-dns-stop:
	./deploy/local/dns.sh stop

# The churn harness (docs/cluster.md, "The churn harness"): real nodes started, stopped,
# killed, paused, drained and resized over the database conclave_chaos of the embedded
# PostgreSQL (kept from run to run, never dropped; the harness restarts PostgreSQL now and
# then) while clients talk, with checks after every step. Steps start for CHAOS_SECONDS;
# CHAOS_OPTS adds options (e.g. --seed N to replay a run, --max-nodes 3). Logs in
# .conclave/chaos/run-*/.
CHAOS_SECONDS ?= 1800
chaos: build
	.build/debug/conclave-chaos --duration $(CHAOS_SECONDS) $(CHAOS_OPTS)

# Allocation benchmarks (malloc calls per parsed stanza, per delivered copy of a room
# message, per hash-ring lookup) in the nested package Benchmarks/, with
# ordo-one/benchmark; the figures are in docs/benchmarks.md.
bench-alloc:
	cd Benchmarks && $(SWIFT) package benchmark --no-progress

# libFuzzer targets (docs/fuzzing.md): the stream parser fed bytes in arbitrary pieces,
# parse → serialize → parse, and a room fed stanzas from several senders. Built in the
# nested package Fuzz/ with -sanitize=fuzzer,address (its own scratch path), each run for
# FUZZ_SECONDS, one after the other; findings in .conclave/fuzz/. `make test` runs the
# same targets briefly on the committed corpus (Tests/Fuzz/corpus/).
FUZZ_SECONDS ?= 60
fuzz: fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) ./Fuzz/run.sh

fuzz-build:
	$(SWIFT) build -c release --package-path Fuzz --scratch-path .build-fuzz \
		-Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library

# The same load against a Conclave node, a 3-node cluster and Prosody (when installed;
# installs nothing), and the table in docs/benchmarks.md (deploy/bench/compare.sh).
bench-compare:
	$(SWIFT) build -c release
	./deploy/bench/compare.sh

# Does the cluster pay for itself: 1 node against BENCH_SCALE_NODES (3) nodes, each held
# to BENCH_SCALE_CPU (0.25) CPU by a cgroup quota, clients round robin; prints capacity,
# CPU per delivery and E(N) (deploy/bench/scale.sh; runs as root).
bench-scale:
	$(SWIFT) build -c release
	./deploy/bench/scale.sh

# The server's CPU time per login, read from /proc by conclave-bench logins against a
# release node: PLAIN (checked against the stored SCRAM keys) and SCRAM-SHA-1, with and
# without TLS (deploy/bench/logins.sh; BENCH_LOGINS logins each, 500 by default).
bench-logins:
	$(SWIFT) build -c release
	./deploy/bench/logins.sh

# A node and a 3-node cluster offered 0.5–4 times what they sustain: the overload curve
# (offered vs delivered, p99, what senders held back), then 3× for 30 s followed by half
# the sustained rate with the seed run 5 s in (deploy/bench/overload.sh; BENCH_SERVER_BIN
# measures another build, e.g. an older one, for "before").
bench-overload:
	$(SWIFT) build -c release
	./deploy/bench/overload.sh

# A local CA and one certificate per node, signed by it (deploy/local/certs.sh).
certs:
	./deploy/local/certs.sh $(NODES)

cluster-status:
	./deploy/local/cluster.sh status

# Every test: unit tests, PostgreSQL integration tests (real nodes on port 0
# against a fresh database), and the spec scripts run by conclave-spec.
# The seed: ../shared/seed when it is next to the repository, else the copy in spec/seed.
SEED_DIR := $(firstword $(wildcard ../shared/seed) spec/seed)
TEST_SPEC_SCRIPTS ?= spec $(SEED_DIR)
# The recorded fixed set (Prosody's transcripts) is replayed on one node and on three.
DIFF_RECORDING ?= spec/differential/prosody-0.12.3.json
test: build-tests
	./deploy/local/test.sh
	./deploy/local/spec.sh $(TEST_SPEC_SCRIPTS)
	./deploy/local/dns-test.sh $(TEST_SPEC_SCRIPTS)
	DIFF_NODES=1 ./deploy/reference/prosody/diff.sh replay $(DIFF_RECORDING)
	DIFF_NODES=3 ./deploy/reference/prosody/diff.sh replay $(DIFF_RECORDING)

# spec/ and the seed through DNS SRV only: dnsmasq serves the records of a local
# 3-node cluster (needs `apt-get install dnsmasq`). Part of `make test`.
dns-test: build
	./deploy/local/dns-test.sh $(TEST_SPEC_SCRIPTS)

# spec/ and ../shared/seed/ against a freshly started local node.
spec: build
	./deploy/local/spec.sh

# conclave-spec against Prosody 0.12 (needs `apt-get install prosody`): the seed and
# spec/ must pass, each mutated seed in spec/mutations/ must fail.
spec-prosody: build
	./deploy/reference/prosody/spec.sh

# conclave-diff: generated scenarios against Prosody 0.12 and a local Conclave of
# DIFF_NODES nodes (default 1) over the reused database conclave_diff, compared stanza
# by stanza; each difference becomes a script in .conclave/diff/ (docs/muc.md).
diff-prosody: build
	./deploy/reference/prosody/diff.sh

# The fixed set `make test` replays: Prosody's transcripts of DIFF_SCENARIOS (default
# 60) scenarios from DIFF_SEED (default 7000), recorded again after the generator changes.
diff-record: build
	DIFF_SCENARIOS=$${DIFF_SCENARIOS:-60} DIFF_SEED=$${DIFF_SEED:-7000} ./deploy/reference/prosody/diff.sh record $(DIFF_RECORDING)

format:
	$(SWIFT) format --in-place --recursive Sources Tests Package.swift

clean-state:
	./deploy/local/cluster.sh down || true
	./deploy/local/db.sh stop || true
	rm -rf .conclave
