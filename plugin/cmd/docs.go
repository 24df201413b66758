package cmd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// WriteDocs writes one Markdown page per command into dir. Machine-specific
// defaults (the home directory in --cache-dir) are written as $HOME so the
// pages are the same on every machine.
func WriteDocs(root *cobra.Command, dir string) error {
	root.DisableAutoGenTag = true
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "kubectl-mesh-docs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	link := func(name string) string { return name }
	if err := doc.GenMarkdownTreeCustom(root, tmp, func(string) string { return "" }, link); err != nil {
		return err
	}
	home, _ := os.UserHomeDir()
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(tmp, e.Name()))
		if err != nil {
			return err
		}
		if home != "" {
			b = bytes.ReplaceAll(b, []byte(home), []byte("$HOME"))
		}
		// Pages are named after the command as users type it.
		name := strings.Replace(e.Name(), "kubectl-mesh", "kubectl_mesh", 1)
		b = bytes.ReplaceAll(b, []byte("(kubectl-mesh"), []byte("(kubectl_mesh"))
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
