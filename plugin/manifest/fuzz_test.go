package manifest

import "testing"

// FuzzDecode: any bytes decode to objects or an error, never a panic, and
// every object returned has apiVersion, kind and name.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
		"---\n---\n",
		`{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}]}`,
		"apiVersion: v1\nkind: List\nitems: [1, 2]\n",
		"kind: [\n",
		"\x00\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := Decode(data)
		if err != nil {
			return
		}
		for _, o := range objs {
			if o.GetAPIVersion() == "" || o.GetKind() == "" || o.GetName() == "" {
				t.Fatalf("incomplete object accepted: %v", o.Object)
			}
		}
	})
}
