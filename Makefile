# lighter-bot: the two commands in the README do all set-up on a fresh Debian/Ubuntu machine.
.PHONY: setup run test bench chaos consistency clean compose-env docker-test

setup:
	@scripts/bootstrap.sh

run: setup  ## Redis + local Lighter venue + the five services; Ctrl-C stops all and cancels orders
	.venv/bin/python -m core.main $(ARGS)

test:  ## the whole suite against a real redis-server, the real SDK signer and the local venue
	@BOOTSTRAP_TEST=1 scripts/bootstrap.sh
	.venv/bin/python -m pytest $(ARGS)

chaos: setup  ## 200 cycles of SIGKILL-a-random-service against the whole system (CHAOS_SEED=N to repeat a run)
	CHAOS_CYCLES=$${CHAOS_CYCLES:-200} .venv/bin/python -m pytest tests/chaos/test_chaos.py -s -q $(ARGS)

bench: setup  ## latency per hop and venue throughput; see BENCHMARKS.md
	.venv/bin/python -m bench $(ARGS)

consistency: setup  ## a 3-minute live session against 10 lab seeds of the same span (BENCHMARKS.md)
	.venv/bin/python -m bench.consistency $(ARGS)

compose-env:  ## once before `docker compose up`: Redis users' passwords in .env.redis and .env.redis.<service> (0600)
	python3 scripts/redis_acl.py compose-env

docker-test:  ## build the image offline and prove docker compose for real (health, quotes, kill flag, cancel on stop)
	scripts/docker_test.sh

clean:
	rm -rf var/ .pytest_cache bench-results
