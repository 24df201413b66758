package cmd

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/cli"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/mesh"
)

// shim is the kubectl_complete-mesh program kubectl runs to complete
// `kubectl mesh …` (kubectl passes the words to complete as arguments).
const shim = `#!/bin/sh
# Written by "kubectl mesh completion install": kubectl runs this to
# complete "kubectl mesh ..." commands.
exec kubectl-mesh __complete "$@"
`

// setupCompletion adds dynamic completions (namespaces, revisions, change
// sets) and `completion install`.
func setupCompletion(root *cobra.Command, c *cli.Context) {
	_ = root.RegisterFlagCompletionFunc("namespace", func(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
		kube, err := c.Kube()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		list, err := kube.CoreV1().Namespaces().List(cmd.Context(), metav1.ListOptions{})
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var names []string
		for _, n := range list.Items {
			names = append(names, n.Name)
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	})
	revisions := func(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
		rd, err := c.Reads()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		planes, err := mesh.Revisions(cmd.Context(), rd)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		return mesh.Names(planes), cobra.ShellCompDirectiveNoFileComp
	}
	changeSets := func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		s, err := store(c)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		sets, err := s.List(cmd.Context())
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var ids []string
		for _, cs := range sets {
			ids = append(ids, cs.ID+"\t"+cs.Title)
		}
		return ids, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
	}
	for _, sub := range root.Commands() {
		if sub.Flags().Lookup("revision") != nil {
			_ = sub.RegisterFlagCompletionFunc("revision", revisions)
		}
		if sub.Name() == "history" || sub.Name() == "undo" {
			sub.ValidArgsFunction = changeSets
		}
	}

	root.InitDefaultCompletionCmd()
	for _, sub := range root.Commands() {
		if sub.Name() == "completion" {
			sub.AddCommand(newCompletionInstall(c))
		}
	}
}

func newCompletionInstall(c *cli.Context) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Let kubectl complete `kubectl mesh …`: write kubectl_complete-mesh next to the plugin",
		Long: `kubectl completes plugin commands by running a kubectl_complete-<plugin>
program found on PATH. This writes that program next to kubectl-mesh (krew
links only the plugin binary, so it cannot ship in the archive). kubectl's own
shell completion must be enabled (source <(kubectl completion bash)).`,
		Example: `  kubectl mesh completion install
  kubectl mesh completion install --dir ~/.local/bin`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if dir == "" {
				bin, err := exec.LookPath("kubectl-mesh")
				if err != nil {
					return exitcode.Usagef("kubectl-mesh is not on PATH, so kubectl cannot find it either: install the plugin first, or pass --dir")
				}
				dir = filepath.Dir(bin)
			}
			path := filepath.Join(dir, "kubectl_complete-mesh")
			if err := os.WriteFile(path, []byte(shim), 0o755); err != nil {
				return exitcode.Usagef("cannot write %s: %v; pass --dir with a writable directory on PATH", path, err)
			}
			fmt.Fprintf(c.Streams.Out, "wrote %s; with kubectl's shell completion enabled, kubectl mesh <TAB> now completes\n", path)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "Directory to write kubectl_complete-mesh to (default: the directory of kubectl-mesh on PATH)")
	return cmd
}
