package install

import (
	"strings"
	"testing"
)

// FuzzValidate: any --set, --revision and --tag values are accepted or
// refused with one line, never a panic.
func FuzzValidate(f *testing.F) {
	f.Add("values.pilot.env.X=1", "1-31", "1.31.0")
	f.Add("=", "default", "latest")
	f.Add("a.b[0].c=d", "UPPER", "")
	f.Fuzz(func(t *testing.T, set, revision, tag string) {
		o := New()
		o.Sets, o.Revision, o.Tag = []string{set}, revision, tag
		if err := o.Validate(); err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("multi-line error: %q", err)
		}
	})
}
