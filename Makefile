# kubectl mesh — build, install, test.
VERSION ?= $(shell hack/version.sh)
LDFLAGS := -s -w -X github.com/kubectl-mesh/kubectl-mesh/plugin/cli.Version=$(VERSION)
export CGO_ENABLED ?= 0

.PHONY: build install test unit tools sandbox lint docs dist fuzz bench

build: ## bin/kubectl-mesh
	go build -trimpath -ldflags "$(LDFLAGS)" -o bin/kubectl-mesh ./cmd/kubectl-mesh

install: ## install kubectl-mesh into $(go env GOPATH)/bin so `kubectl mesh` finds it
	go install -trimpath -ldflags "$(LDFLAGS)" ./cmd/kubectl-mesh
	@echo "installed $$(go env GOPATH)/bin/kubectl-mesh; make sure that directory is on PATH, then run: kubectl mesh --help"

tools: ## the test control plane: etcd, kube-apiserver, controller manager, scheduler, kubectl, kwok (cached in bin/)
	hack/build-tools.sh

lint:
	@out=$$(gofmt -l cmd plugin workflows hack/sandbox); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	go vet ./...

test: tools lint ## everything: builds what the tests need, then unit and end-to-end tests, then brief fuzzing
	go test -count=1 -timeout 40m ./...
	# A count, not a duration: a duration budget races Go's fuzz coordinator
	# and fails spuriously with "context deadline exceeded" on a busy machine
	# (golang/go#75804, fixed in Go 1.27).
	$(MAKE) fuzz FUZZTIME=5000x

# Packages whose tests start a control plane (or istiod, Prometheus).
E2E_PKGS := ./cmd/kubectl-mesh ./plugin/testenv ./hack/sandbox

unit: ## the fast tier: every test that needs no control plane (kube-score's comes from bin/: make tools once)
	go test -count=1 $$(go list ./... | grep -v -x -F $(foreach p,$(E2E_PKGS),-e github.com/kubectl-mesh/kubectl-mesh/$(patsubst ./%,%,$(p))))

FUZZTIME ?= 200000x
fuzz: ## fuzz every parser of user input (FUZZTIME each)
	go test ./plugin/manifest -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	go test ./plugin/analysis -run '^$$' -fuzz '^FuzzParseSuppression$$' -fuzztime $(FUZZTIME)
	go test ./plugin/reads -run '^$$' -fuzz '^FuzzDecodeList$$' -fuzztime $(FUZZTIME)
	go test ./workflows/install -run '^$$' -fuzz '^FuzzValidate$$' -fuzztime $(FUZZTIME)
	go test ./workflows/mtls -run '^$$' -fuzz '^FuzzParseException$$' -fuzztime $(FUZZTIME)
	go test ./workflows/mtls -run '^$$' -fuzz '^FuzzParseWindow$$' -fuzztime $(FUZZTIME)
	go test ./workflows/canary -run '^$$' -fuzz '^FuzzParseHeader$$' -fuzztime $(FUZZTIME)
	go test ./workflows/canary -run '^$$' -fuzz '^FuzzParseSteps$$' -fuzztime $(FUZZTIME)
	go test ./workflows/onboard -run '^$$' -fuzz '^FuzzParseCaller$$' -fuzztime $(FUZZTIME)

sandbox: tools ## a local control plane with Istio CRDs and sample workloads
	hack/sandbox.sh

docs: ## regenerate docs/ (one page per command; a test checks it is current)
	go run ./hack/docs

dist: ## release archives for linux/darwin/windows x amd64/arm64, sha256 files, dist/krew/mesh.yaml
	VERSION=$(VERSION) hack/dist.sh

bench: ## measure plans, analysis, start-up and size against istioctl on a real API server; writes bench/RESULTS.md
	hack/build-tools.sh etcd kube-apiserver istioctl gnu-time
	go run ./bench
