# crud-master: the front door. Every target runs as root (it installs and supervises system services).
SHELL := /bin/bash

.PHONY: up test test-hosts test-vms down status logs bench

## up: install what is missing, provision, and start the platform
up:
	@bash scripts/up.sh

## test: every test suite, against real PostgreSQL and RabbitMQ (installs and starts them itself)
test:
	@bash scripts/test.sh

## test-hosts: the three-VM topology on network namespaces (part of make test)
test-hosts:
	@bash scripts/test-hosts.sh

## test-vms: the Vagrantfile on three real (emulated) VMs, then the audit, reboots, provisioning again (~1 hour;
## not part of make test: run it before calling a change to the Vagrantfile, scripts/ or config.yaml done)
test-vms:
	@bash scripts/test-vms.sh

## down: stop the apps (data kept)
down:
	@bash scripts/down.sh

## status: PM2 list, health of each service, queues and their limits, key metrics
status:
	@bash scripts/status.sh

## logs: follow every app's log
logs:
	@bash scripts/logs.sh

## bench: benchmarks side by side with their baselines, on a platform instance of its own (bench/README.md)
bench:
	@bash scripts/bench.sh
