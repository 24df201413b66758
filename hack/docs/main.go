// Command docs regenerates docs/ from the cobra commands (make docs); a test
// fails when docs/ is out of date.
package main

import (
	"fmt"
	"os"
	"strings"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cmd"
	"github.com/kubectl-mesh/kubectl-mesh/workflows"
)

func main() {
	root, _ := cmd.NewRoot(genericiooptions.IOStreams{In: strings.NewReader(""), Out: os.Stdout, ErrOut: os.Stderr}, workflows.All)
	if err := cmd.WriteDocs(root, "docs"); err != nil {
		fmt.Fprintln(os.Stderr, "docs:", err)
		os.Exit(1)
	}
}
