// Package workflows lists every workflow; cmd/kubectl-mesh wires them in.
package workflows

import (
	"github.com/kubectl-mesh/kubectl-mesh/plugin/pipeline"
	"github.com/kubectl-mesh/kubectl-mesh/workflows/apply"
	"github.com/kubectl-mesh/kubectl-mesh/workflows/authz"
	"github.com/kubectl-mesh/kubectl-mesh/workflows/canary"
	"github.com/kubectl-mesh/kubectl-mesh/workflows/egress"
	"github.com/kubectl-mesh/kubectl-mesh/workflows/health"
	"github.com/kubectl-mesh/kubectl-mesh/workflows/inject"
	"github.com/kubectl-mesh/kubectl-mesh/workflows/install"
	"github.com/kubectl-mesh/kubectl-mesh/workflows/mtls"
	"github.com/kubectl-mesh/kubectl-mesh/workflows/onboard"
	"github.com/kubectl-mesh/kubectl-mesh/workflows/resilience"
)

// All returns a fresh instance of every workflow and group of workflows.
// No workflow imports another (TestWorkflowsImportNoOtherWorkflow): where
// one needs another's planning (onboard the mTLS findings, check --pre the
// install prechecks), it is handed in here.
func All() []pipeline.Command {
	return []pipeline.Command{install.New(), install.NewUninstall(), inject.New(), mtls.New(), authz.New(), egress.New(), canary.New(), resilience.New(), onboard.New(mtls.Findings), health.NewCheck(install.Prechecks), health.NewStatus(), apply.New()}
}
