.PHONY: demo local test test-unit lint typecheck validate build bench chaos clean

# ARGS go to the command: make demo ARGS='--tasks 50', make local ARGS='--tick 1',
# make test ARGS='tests/local -k sqs'.
ARGS ?=

demo:  ## the whole system end to end on this machine (emulated stack, sample algorithms)
	scripts/demo.sh $(ARGS)

local:  ## the SAM template emulated in-process until Ctrl-C, with sample algorithms
	scripts/bootstrap.sh
	.venv/bin/baton local $(ARGS)

test:  ## the whole suite against the real Redis, MariaDB and moto
	scripts/test.sh $(ARGS)

test-unit:
	scripts/test.sh tests/unit

lint:
	scripts/bootstrap.sh
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

typecheck:
	scripts/bootstrap.sh
	.venv/bin/mypy shared functions local tests bench

validate:  ## the template, as CI checks it
	WITH_SAM=1 scripts/bootstrap.sh
	AWS_DEFAULT_REGION=eu-west-1 .venv-sam/bin/sam validate --lint --region eu-west-1

build: validate
	AWS_DEFAULT_REGION=eu-west-1 .venv-sam/bin/sam build

bench:  ## latency, then what one task costs (ARGS go to bench/cost.py: ARGS='--tasks 200')
	scripts/bootstrap.sh
	scripts/services.sh
	.venv/bin/python -m bench.dispatch_latency
	.venv/bin/python -m bench.cost $(ARGS)

clean:
	rm -rf .aws-sam .venv .venv-sam .pytest_cache .mypy_cache .ruff_cache .baton-local reports
