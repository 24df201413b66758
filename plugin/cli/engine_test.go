package cli

import (
	"strings"
	"testing"
)

func TestEngineValidate(t *testing.T) {
	cases := []struct {
		name    string
		mod     func(*EngineOptions)
		wantErr string
	}{
		{"defaults", func(*EngineOptions) {}, ""},
		{"server dry run", func(o *EngineOptions) { o.DryRun = DryRunServer }, ""},
		{"client dry run", func(o *EngineOptions) { o.DryRun = DryRunClient }, ""},
		{"bad dry run", func(o *EngineOptions) { o.DryRun = "true" }, `invalid --dry-run "true"`},
		{"yaml", func(o *EngineOptions) { o.Output = "yaml" }, ""},
		{"json", func(o *EngineOptions) { o.Output = "json" }, ""},
		{"bad output", func(o *EngineOptions) { o.Output = "wide" }, `invalid -o/--output "wide"`},
		{"threshold any case", func(o *EngineOptions) { o.FailureThreshold = "warning" }, ""},
		{"bad threshold", func(o *EngineOptions) { o.FailureThreshold = "Fatal" }, `invalid severity "Fatal"`},
		{"empty field manager", func(o *EngineOptions) { o.FieldManager = " " }, "--field-manager must not be empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultEngineOptions()
			tc.mod(o)
			err := o.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseSeverityOrder(t *testing.T) {
	for want, s := range []string{"Info", "Warning", "Error"} {
		if got, err := ParseSeverity(s); err != nil || got != want {
			t.Fatalf("%s → %d, %v", s, got, err)
		}
	}
}
