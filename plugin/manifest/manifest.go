// Package manifest reads Kubernetes YAML/JSON manifests from files or stdin.
package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/kubectl-mesh/kubectl-mesh/plugin/exitcode"
)

// File is one input with its decoded objects.
type File struct {
	Name    string
	Data    []byte
	Objects []*unstructured.Unstructured
}

// Read loads each path ("-" is stdin; a directory means its .yaml/.yml/.json
// files) and decodes it. Errors name the file and document and exit 65.
func Read(paths []string, stdin io.Reader, recursive bool) ([]File, error) {
	files, err := ReadData(paths, stdin, recursive)
	if err != nil {
		return nil, err
	}
	for i, f := range files {
		objs, err := Decode(f.Data)
		if err != nil {
			return nil, exitcode.Dataf("%s: %v", f.Name, err)
		}
		if len(objs) == 0 {
			return nil, exitcode.Dataf("%s contains no objects", f.Name)
		}
		files[i].Objects = objs
	}
	return files, nil
}

// ReadData loads each path as Read does but leaves the bytes undecoded
// (Objects nil), for readers that parse leniently themselves.
func ReadData(paths []string, stdin io.Reader, recursive bool) ([]File, error) {
	var out []File
	for _, p := range paths {
		names := []string{p}
		if p != "-" {
			st, err := os.Stat(p)
			if err != nil {
				return nil, exitcode.Dataf("cannot read %s: %v", p, errors.Unwrap(err))
			}
			if st.IsDir() {
				if names, err = dirFiles(p, recursive); err != nil {
					return nil, err
				}
			}
		}
		for _, n := range names {
			f, err := readOne(n, stdin)
			if err != nil {
				return nil, err
			}
			out = append(out, f)
		}
	}
	return out, nil
}

// dirFiles lists a directory's manifest files (.yaml, .yml, .json), and
// with recursive those of its subdirectories too, as kubectl -R does.
func dirFiles(dir string, recursive bool) ([]string, error) {
	var names []string
	err := filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			if path != dir && !recursive {
				return filepath.SkipDir
			}
			return nil
		}
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".yaml", ".yml", ".json":
			names = append(names, path)
		}
		return nil
	})
	if err != nil {
		return nil, exitcode.Dataf("cannot read directory %s: %v", dir, err)
	}
	if len(names) == 0 {
		hint := ""
		if !recursive {
			hint = " (add -R for its subdirectories)"
		}
		return nil, exitcode.Dataf("directory %s has no .yaml, .yml or .json files%s", dir, hint)
	}
	return names, nil
}

func readOne(name string, stdin io.Reader) (File, error) {
	var data []byte
	var err error
	if name == "-" {
		data, err = io.ReadAll(stdin)
		name = "stdin"
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return File{}, exitcode.Dataf("cannot read %s: %v", name, err)
	}
	return File{Name: name, Data: data}, nil
}

// Decode splits a multi-document YAML or JSON stream into objects and
// checks that each has apiVersion, kind and metadata.name. Lists are expanded.
func Decode(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for i := 1; ; i++ {
		var obj map[string]any
		err := dec.Decode(&obj)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d is not valid YAML: %s", i, firstLine(err.Error()))
		}
		if len(obj) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		if u.IsList() {
			if err := u.EachListItem(func(o runtime.Object) error {
				item := o.(*unstructured.Unstructured)
				if err := check(item, i); err != nil {
					return err
				}
				out = append(out, item)
				return nil
			}); err != nil {
				return nil, err
			}
			continue
		}
		if err := check(u, i); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
}

func check(u *unstructured.Unstructured, doc int) error {
	switch {
	case u.GetAPIVersion() == "":
		return fmt.Errorf("document %d has no apiVersion", doc)
	case u.GetKind() == "":
		return fmt.Errorf("document %d has no kind", doc)
	case u.GetName() == "":
		return fmt.Errorf("document %d (%s) has no metadata.name", doc, u.GetKind())
	}
	return nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// New returns an empty object of a kind, named (ns "" for cluster-scoped).
func New(apiVersion, kind, ns, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	u.SetName(name)
	if ns != "" {
		u.SetNamespace(ns)
	}
	return u
}
