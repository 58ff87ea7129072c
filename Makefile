# Common tasks. CI runs .ci/run (fmt, clippy, tests, deployment checks); `make ci` runs
# the same.
.PHONY: build release test lint fmt ci run bench overload cluster-bench remote-cost writes-bench import-bench deploy-check image container-test scrape-test clean-data

build:
	cargo build --workspace

release:
	cargo build --release -p recd-node -p recd-loadgen

test:
	cargo test --workspace

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

ci:
	bash .ci/run

run:
	cargo run --release -p recd-node -- run --config configs/dev.yaml

# reference data, kernel, HTTP sweep and ablations → docs/benchmarks.md (~12 min)
bench:
	bash loadgen/scripts/bench.sh

# overload (0.5x..3x the knee of `make bench`) and bursts, deadline vs fixed batching
overload:
	bash loadgen/scripts/overload.sh

# read p99 at 0.7x capacity alone vs with 1000 clicks/s and 100 item upserts/s
writes-bench:
	bash loadgen/scripts/writes.sh

# 10 M users through `recd-node import users`: users/s, bytes per user, cold/warm p99
import-bench:
	bash loadgen/scripts/import.sh

# manifests (kubernetes-validate, yamllint), rules (promtool check + unit tests),
# dashboard, shell scripts, Dockerfile (hadolint); installs the tools it needs
deploy-check:
	bash deploy/check.sh

# the recd-node image, FROM scratch (no registry needed)
image:
	bash deploy/docker/build.sh

# three containers on a private network, their feature store a Redis container:
# kill, restart, partition, heal; a write seen across replicas; Redis killed and back
container-test: image
	bash deploy/docker/build-redis.sh
	bash deploy/docker/cluster-test.sh

# a real Prometheus scraping a real node
scrape-test: release
	bash deploy/observability/scrape-test.sh $${CARGO_TARGET_DIR:-target}/release/recd-node

# three nodes (configs/local-cluster.yaml) vs one on the same data and load
cluster-bench:
	bash loadgen/scripts/cluster.sh

# CPU per remote call: one node vs an ingress node calling a data-only node
remote-cost:
	bash loadgen/scripts/remote-cost.sh

clean-data:
	rm -rf data
