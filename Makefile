# Conclave: the two commands are `make run` and `make test`.
SWIFT ?= swift
BIN := .build/debug/conclave
TEST_DB := conclave_test

.PHONY: run test build build-tests db-start db-stop db-status unit-test integration-test clean-state format help

help:
	@echo "make run    build and run one node (embedded PostgreSQL under .conclave/)"
	@echo "make test   build and run every test"

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

# Every test: unit tests and PostgreSQL integration tests (each integration test
# starts real nodes on port 0 against a fresh database).
test: build-tests
	./deploy/local/test.sh

format:
	$(SWIFT) format --in-place --recursive Sources Tests Package.swift

clean-state:
	./deploy/local/db.sh stop || true
	rm -rf .conclave
