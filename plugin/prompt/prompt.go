// Package prompt asks the user for missing values. Workflows depend on the
// Prompter interface only; the survey adapter lives here so the archived
// survey library stays contained in one package.
package prompt

import "errors"

// ErrInterrupted is returned when the user pressed Ctrl-C at a prompt.
var ErrInterrupted = errors.New("interrupted")

// Prompter asks questions. Every method returns the default when the user
// just presses enter.
type Prompter interface {
	// Tell shows what the next questions are about (the traffic observed,
	// the current mode); workflows hand it over instead of printing.
	Tell(text string)
	Input(message, def string) (string, error)
	Select(message string, options []string, def string) (string, error)
	Confirm(message string, def bool) (bool, error)
}
