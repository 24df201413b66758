// Package krew renders the krew plugin manifest template (krew/mesh.yaml,
// krew-release-bot syntax) for a version from the built archives.
package krew

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"text/template"

	"sigs.k8s.io/yaml"
)

// ReleaseURL is where the template's archive URLs point.
const ReleaseURL = "https://github.com/kubectl-mesh/kubectl-mesh/releases/download/"

// Options for Render.
type Options struct {
	Version string
	// Dist holds the archives named as in the template's URLs.
	Dist string
	// BaseURL replaces ReleaseURL+version+"/" (tests serve archives locally).
	BaseURL string
	// OnlyBuilt drops platforms whose archive is not in Dist (a partial
	// build, e.g. the host platform in tests) instead of failing.
	OnlyBuilt bool
}

// Render fills the template: {{ .TagName }} is the version and
// addURIAndSha(url, tag) becomes the uri and the archive's real sha256.
func Render(tmpl []byte, o Options) ([]byte, error) {
	missing := map[string]bool{}
	funcs := template.FuncMap{
		"addURIAndSha": func(url, tag string) (string, error) {
			url = strings.ReplaceAll(url, "{{ .TagName }}", tag)
			file := path.Base(url)
			sum, err := sha256File(filepath.Join(o.Dist, file))
			if os.IsNotExist(err) && o.OnlyBuilt {
				missing[file] = true
				return "uri: MISSING\n    sha256: MISSING", nil
			}
			if err != nil {
				return "", fmt.Errorf("archive for %s: %w (run make dist)", url, err)
			}
			if o.BaseURL != "" {
				url = strings.TrimSuffix(o.BaseURL, "/") + "/" + file
			}
			return fmt.Sprintf("uri: %s\n    sha256: %s", url, sum), nil
		},
	}
	t, err := template.New("krew").Funcs(funcs).Parse(string(tmpl))
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := t.Execute(&out, map[string]string{"TagName": o.Version}); err != nil {
		return nil, err
	}
	if len(missing) == 0 {
		return out.Bytes(), nil
	}
	return dropMissing(out.Bytes())
}

// dropMissing removes platforms whose archive was not built.
func dropMissing(b []byte) ([]byte, error) {
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	spec := m["spec"].(map[string]any)
	var keep []any
	for _, p := range spec["platforms"].([]any) {
		if p.(map[string]any)["uri"] != "MISSING" {
			keep = append(keep, p)
		}
	}
	if len(keep) == 0 {
		return nil, fmt.Errorf("no archive was built for any platform")
	}
	spec["platforms"] = keep
	return yaml.Marshal(m)
}

func sha256File(p string) (string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]), nil
}
