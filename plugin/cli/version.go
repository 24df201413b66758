package cli

// Version is the plugin's release, stamped at build time with
// -ldflags "-X github.com/kubectl-mesh/kubectl-mesh/plugin/cli.Version=v1.2.3".
var Version = "dev"
