# Everyday commands, for people who expect a Makefile. Each target is one
# command you can also type yourself; the lint and race lists live in .ci/run.

.PHONY: help generate test race lint e2e ci

help: ## list the targets
	@awk -F ':.*## ' '/^[a-z0-9]+:.*## / { printf "  make %-9s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

generate: ## regenerate the code derived from schema/ (graph/ and the rest)
	go generate ./...

test: ## run every test (the README's command)
	go test ./...

race: ## run the packages that work concurrently under the race detector
	bash .ci/run race

lint: ## gofmt check, go vet and staticcheck
	bash .ci/run lint

e2e: ## the end-to-end tests with the real RxDB client (needs Node.js and npm)
	go test ./e2e/

ci: ## everything CI runs
	bash .ci/run
