package prompt

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
)

func TestMockAnswersInOrderAndVerifies(t *testing.T) {
	m := &Mock{}
	m.ExpectInput("Namespace", "bookinfo")
	m.ExpectSelect("Profile", "production")
	m.ExpectConfirm("Apply", true)
	if v, err := m.Input("Namespace to use:", ""); err != nil || v != "bookinfo" {
		t.Fatalf("Input = %q, %v", v, err)
	}
	if v, err := m.Select("Profile:", []string{"default", "production"}, "default"); err != nil || v != "production" {
		t.Fatalf("Select = %q, %v", v, err)
	}
	if v, err := m.Confirm("Apply these 3 change(s)?", false); err != nil || !v {
		t.Fatalf("Confirm = %v, %v", v, err)
	}
	if err := m.Verify(); err != nil {
		t.Fatal(err)
	}
}

func TestMockFailsOnUnexpectedAndUnused(t *testing.T) {
	m := &Mock{}
	if _, err := m.Confirm("surprise?", false); err == nil {
		t.Fatal("unexpected prompt accepted")
	}
	if m.Verify() == nil {
		t.Fatal("Verify ignored the unexpected prompt")
	}
	m = &Mock{}
	m.ExpectInput("Namespace", "x")
	if err := m.Verify(); err == nil || !strings.Contains(err.Error(), "never asked") {
		t.Fatalf("Verify = %v, want never asked", err)
	}
	m = &Mock{}
	m.ExpectSelect("Profile", "bogus")
	if _, err := m.Select("Profile:", []string{"a", "b"}, "a"); err == nil {
		t.Fatal("answer outside the options accepted")
	}
}

func TestNewSurveyNeedsFiles(t *testing.T) {
	if _, err := NewSurvey(strings.NewReader(""), &bytes.Buffer{}, io.Discard); err == nil {
		t.Fatal("survey accepted non-terminal streams")
	}
}

// TestSurveyOnRealTerminal drives the survey adapter through a pseudo
// terminal: what a user types at the prompt becomes the answer, and
// Ctrl-C becomes ErrInterrupted.
func TestSurveyOnRealTerminal(t *testing.T) {
	cases := []struct {
		name  string
		keys  string
		ask   func(*Survey) (any, error)
		want  any
		isErr error
	}{
		{"confirm yes", "y\r", func(s *Survey) (any, error) { return s.Confirm("Apply?", false) }, true, nil},
		{"confirm default", "\r", func(s *Survey) (any, error) { return s.Confirm("Apply?", false) }, false, nil},
		{"input typed", "bookinfo\r", func(s *Survey) (any, error) { return s.Input("Namespace:", "default") }, "bookinfo", nil},
		{"input default", "\r", func(s *Survey) (any, error) { return s.Input("Namespace:", "default") }, "default", nil},
		{"select second", "\x1b[B\r", func(s *Survey) (any, error) { return s.Select("Profile:", []string{"default", "production"}, "") }, "production", nil},
		{"ctrl-c", "\x03", func(s *Survey) (any, error) { return s.Confirm("Apply?", false) }, false, ErrInterrupted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ptmx, tty, err := pty.Open()
			if err != nil {
				t.Fatal(err)
			}
			defer ptmx.Close()
			defer tty.Close()
			// Act as the terminal: answer survey's cursor-position queries
			// (ESC[6n) as a real terminal would, and type once the question
			// is on screen.
			var screen bytes.Buffer
			seen := make(chan struct{})
			go func() {
				buf := make([]byte, 4096)
				once := false
				for {
					n, err := ptmx.Read(buf)
					chunk := string(buf[:n])
					screen.WriteString(chunk)
					for range strings.Count(chunk, "\x1b[6n") {
						_, _ = ptmx.Write([]byte("\x1b[1;1R"))
					}
					if !once && strings.Contains(screen.String(), "?") {
						once = true
						close(seen)
					}
					if err != nil {
						return
					}
				}
			}()
			go func() {
				select {
				case <-seen:
				case <-time.After(5 * time.Second):
				}
				time.Sleep(50 * time.Millisecond)
				_, _ = ptmx.Write([]byte(tc.keys))
			}()
			s, err := NewSurvey(tty, tty, tty)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tc.ask(s)
			if tc.isErr != nil {
				if err != tc.isErr {
					t.Fatalf("err = %v, want %v", err, tc.isErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("answer %v (%v), want %v; screen:\n%q", got, err, tc.want, screen.String())
			}
		})
	}
}
