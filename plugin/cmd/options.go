package cmd

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// connectionFlags are kubectl's connection flags (--kubeconfig, --context,
// -n …). Every command takes them; as in kubectl, each command's help
// leaves them out and `kubectl mesh options` lists them.
func connectionFlags(add func(*pflag.FlagSet)) *pflag.FlagSet {
	fs := pflag.NewFlagSet("connection", pflag.ContinueOnError)
	add(fs)
	return fs
}

func newOptions(conn *pflag.FlagSet) *cobra.Command {
	return &cobra.Command{
		Use:   "options",
		Short: "List the kubectl connection flags every command takes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "The following options can be passed to any command:\n\n%s", conn.FlagUsages())
			return nil
		},
	}
}

// usageTemplate is cobra's without the connection flags, and a pointer
// to options.
const usageTemplate = `Usage:{{if .Runnable}}
  {{.UseLine}}{{end}}{{if .HasAvailableSubCommands}}
  {{.CommandPath}} [command]{{end}}{{if gt (len .Aliases) 0}}

Aliases:
  {{.NameAndAliases}}{{end}}{{if .HasExample}}

Examples:
{{.Example}}{{end}}{{if .HasAvailableSubCommands}}

Available Commands:{{range .Commands}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{with meshFlags .LocalFlags}}

Flags:
{{.}}{{end}}{{with meshFlags .InheritedFlags}}

Global Flags:
{{.}}{{end}}

{{if .HasAvailableSubCommands}}Use "{{.CommandPath}} [command] --help" for more information about a command.
{{end}}Use "kubectl mesh options" for the kubectl connection flags (--kubeconfig, --context, -n …), which every command takes.
`

// flagUsages lists a flag set without the connection flags.
func flagUsages(conn *pflag.FlagSet) func(*pflag.FlagSet) string {
	return func(flags *pflag.FlagSet) string {
		fs := pflag.NewFlagSet("shown", pflag.ContinueOnError)
		flags.VisitAll(func(f *pflag.Flag) {
			if conn.Lookup(f.Name) == nil && !f.Hidden {
				fs.AddFlag(f)
			}
		})
		return strings.TrimRight(fs.FlagUsages(), "\n")
	}
}
