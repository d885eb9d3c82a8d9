# firmware-operator — run `make help` for the targets.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

BIN ?= $(CURDIR)/bin
ENVTEST_ASSETS ?= $(BIN)/envtest
CLUSTER_ASSETS ?= $(BIN)/cluster
GO ?= go
CONTROLLER_GEN ?= $(GO) tool controller-gen
GOLANGCI_LINT ?= $(GO) tool golangci-lint
HELM ?= $(GO) tool helm
KUSTOMIZE ?= $(GO) tool kustomize
KUBECTL ?= kubectl
CONTAINER_TOOL ?= docker
# IMG is the one image of the manager and the agents.
IMG ?= ghcr.io/fwops/firmware-operator:latest
CHART := charts/firmware-operator
# helm built from source (go tool helm) assumes Kubernetes v1.20 offline, below the chart's
# kubeVersion; render for the version we build against instead.
KUBE_VERSION ?= 1.37.0

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
	@# The chart carries copies: Helm reads only files inside the chart (test/deploy checks them).
	rm -f $(CHART)/crds/*.yaml
	cp config/crd/bases/*.yaml $(CHART)/crds/
	cp config/rbac/role.yaml $(CHART)/files/role.yaml

.PHONY: api-docs
api-docs: ## Write docs/api.md, the API reference, from the CRDs (run after 'make manifests').
	$(GO) run ./hack/apidocs -o docs/api.md -crds config/crd/bases

.PHONY: verify
verify: generate manifests ## Fail when generated files are stale.
	@git diff --exit-code -- api config $(CHART) || { echo "generated files are stale: run 'make generate manifests' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- api config $(CHART))" || { git status --porcelain -- api config $(CHART); echo "untracked generated files: commit them"; exit 1; }

.PHONY: fmt
fmt: ## gofmt the tree.
	gofmt -w $$(git ls-files '*.go')

.PHONY: lint
lint: ## gofmt, go vet and golangci-lint.
	@out=$$(gofmt -l $$(git ls-files '*.go')); test -z "$$out" || { echo "gofmt would change:"; echo "$$out"; exit 1; }
	$(GO) vet ./...
	$(GOLANGCI_LINT) run --allow-serial-runners ./...

.PHONY: build
build: ## Build the one binary (manager, agent, simulator, demo).
	CGO_ENABLED=0 $(GO) build -o $(BIN)/firmware-operator .

.PHONY: docker-build
docker-build: ## Build the image IMG (manager and agent in one).
	$(CONTAINER_TOOL) build -t $(IMG) .

.PHONY: chart-lint
chart-lint: ## helm lint the chart and render it.
	$(HELM) lint --strict $(CHART) --kube-version $(KUBE_VERSION)
	$(HELM) template firmware-operator $(CHART) --namespace firmware-operator-system --kube-version $(KUBE_VERSION) --include-crds >/dev/null

.PHONY: kustomize-build
kustomize-build: ## Render config/default (what 'make deploy' applies) to stdout.
	$(KUSTOMIZE) build config/default

# deploy edits a copy of config/ so that IMG never dirties the tree, and calls the kustomize
# binary directly because 'go tool' only runs inside the module. CRDs go first and must be
# Established before the default PortPolicy can be applied.
.PHONY: deploy
deploy: ## Install CRDs, RBAC, the manager (image IMG) and the default PortPolicy with kubectl.
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	kz=$$($(GO) tool -n kustomize); \
	cp -R config "$$tmp/"; \
	(cd "$$tmp/config/manager" && "$$kz" edit set image controller=$(IMG)); \
	"$$kz" build "$$tmp/config/crd" | $(KUBECTL) apply --server-side -f -; \
	"$$kz" build "$$tmp/config/crd" | $(KUBECTL) wait --for=condition=Established --timeout=60s -f -; \
	"$$kz" build "$$tmp/config/default" | $(KUBECTL) apply --server-side -f -

.PHONY: undeploy
undeploy: ## Remove what 'make deploy' installed; deleting the CRDs deletes every UpdateJob, UpdateTarget and PortPolicy.
	$(KUSTOMIZE) build config/default | $(KUBECTL) delete --ignore-not-found -f -

.PHONY: envtest-assets
envtest-assets: ## Build kube-apiserver and etcd from their Go modules into bin/envtest (cached).
	hack/envtest-assets.sh $(ENVTEST_ASSETS)

.PHONY: cluster-assets
cluster-assets: envtest-assets ## Build kube-scheduler, kube-controller-manager and kubelet from k8s.io/kubernetes into bin/cluster (cached).
	hack/cluster-assets.sh $(CLUSTER_ASSETS)

# demo builds (once) or reuses the envtest binaries, then runs the demo against them. DEMO_ARGS
# passes flags, e.g. DEMO_ARGS=--keep; 'go run -tags demo . demo --help' lists them.
DEMO_ARGS ?=
.PHONY: demo
demo: ## Local control plane + simulated fleet + manager + agents: a rollout, live, then a summary.
	hack/envtest-assets.sh $(ENVTEST_ASSETS)
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) $(GO) run -tags demo . demo $(DEMO_ARGS)

.PHONY: demo-cluster
demo-cluster: cluster-assets ## The same rollout on a real single-node Kubernetes (kubelet, containerd; run as root): the chart's manager, agents as real pods.
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) CLUSTER_ASSETS=$(CLUSTER_ASSETS) $(GO) run -tags demo . demo --cluster $(DEMO_ARGS)

.PHONY: test
test: envtest-assets cluster-assets verify lint ## Every test, unit to end-to-end, against a real API server, and on a real node (test/cluster).
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) $(GO) test -race -count=1 -timeout 30m $$($(GO) list ./... | grep -v -e /test/cluster -e /test/chaos)
	@# The chaos suite alone too, for the same reason, and without the race detector: its
	@# in-process fleet of 200 simulated iLOs does not fit this machine under it (the manager
	@# it kills is a separate binary; the packages above run the same code under -race).
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) $(GO) test -count=1 -timeout 30m -v ./test/chaos -args -ginkgo.v
	@# The cluster suite alone: its agents bind the node's (this machine's) ports, which the
	@# in-process agents of other packages would contend for.
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) CLUSTER_ASSETS=$(CLUSTER_ASSETS) $(GO) test -race -count=1 -timeout 30m ./test/cluster
	$(MAKE) fuzz

# bench runs the benchmarks of BENCHMARKS.md, each beside its reference in the same run, and
# prints one table of ratios. It needs nginx-light, wrk and ilorest (Debian); CI does not run
# it. BENCH_ARGS passes flags, e.g. BENCH_ARGS='-only fwserver,requests'.
BENCH_ARGS ?=
.PHONY: bench
bench: envtest-assets ## Benchmarks beside their references (firmware server vs nginx, requests vs ilorest, fleet memory, rollout, the 10,000-target scale rollout): a table of ratios.
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) $(GO) run ./hack/bench $(BENCH_ARGS)

FUZZTIME ?= 20s
.PHONY: fuzz
fuzz: ## Run the fuzzers briefly (hack/fuzz.sh).
	GO=$(GO) FUZZTIME=$(FUZZTIME) bash hack/fuzz.sh
