# firmware-operator — run `make help` for the targets.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

BIN ?= $(CURDIR)/bin
ENVTEST_ASSETS ?= $(BIN)/envtest
GO ?= go
CONTROLLER_GEN ?= $(GO) tool controller-gen
GOLANGCI_LINT ?= $(GO) tool golangci-lint

.PHONY: help
help: ## Show the targets.
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: generate
generate: ## Generate deep-copy code (zz_generated.*).
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: manifests
manifests: ## Generate CRDs and RBAC from the markers.
	$(CONTROLLER_GEN) crd rbac:roleName=firmware-operator-manager paths=./api/... paths=./controllers/... \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: verify
verify: generate manifests ## Fail when generated files are stale.
	@git diff --exit-code -- api config || { echo "generated files are stale: run 'make generate manifests' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- api config)" || { git status --porcelain -- api config; echo "untracked generated files: commit them"; exit 1; }

.PHONY: fmt
fmt: ## gofmt the tree.
	gofmt -w $$(git ls-files '*.go')

.PHONY: lint
lint: ## gofmt, go vet and golangci-lint.
	@out=$$(gofmt -l $$(git ls-files '*.go')); test -z "$$out" || { echo "gofmt would change:"; echo "$$out"; exit 1; }
	$(GO) vet ./...
	$(GOLANGCI_LINT) run ./...

.PHONY: build
build: ## Build the one binary (manager, agent, simulator, demo).
	CGO_ENABLED=0 $(GO) build -o $(BIN)/firmware-operator .

.PHONY: envtest-assets
envtest-assets: ## Build kube-apiserver and etcd from their Go modules into bin/envtest (cached).
	hack/envtest-assets.sh $(ENVTEST_ASSETS)

.PHONY: test
test: envtest-assets verify lint ## Every test, unit to end-to-end, against a real API server.
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) $(GO) test -race -count=1 -timeout 30m ./...
	$(MAKE) fuzz

FUZZTIME ?= 20s
.PHONY: fuzz
fuzz: ## Run the fuzzers briefly.
	@for f in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -r dirname | sort -u); do \
	  for n in $$(grep -h '^func Fuzz' $$f/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "fuzz $$f $$n"; $(GO) test -run='^$$' -fuzz="^$$n$$" -fuzztime=$(FUZZTIME) $$f || exit 1; \
	  done; done
