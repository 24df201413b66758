package analysis

import (
	"strings"
	"testing"
)

// FuzzParseSuppression: -S values never panic; accepted ones have a known
// code and a resource pattern.
func FuzzParseSuppression(f *testing.F) {
	for _, s := range []string{"IST0101=VirtualService bookinfo/reviews", "IST0101=", "=x", "nonsense", "IST0103=Pod */*", "=="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sup, err := ParseSuppression(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error: %q", err)
			}
			return
		}
		if !strings.HasPrefix(sup.Code, "IST") || sup.ResourceName == "" {
			t.Fatalf("accepted %q as %+v", s, sup)
		}
	})
}
