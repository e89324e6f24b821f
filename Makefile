# crud-master: the front door. Every target runs as root (it installs and supervises system services).
SHELL := /bin/bash

.PHONY: up test down status logs bench

## up: install what is missing, provision, and start the platform
up:
	@bash scripts/up.sh

## test: every test suite, against real PostgreSQL and RabbitMQ (installs and starts them itself)
test:
	@bash scripts/test.sh

down:
	@bash scripts/down.sh

status:
	@bash scripts/status.sh
