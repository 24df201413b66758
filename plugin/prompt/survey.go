package prompt

import (
	"errors"
	"fmt"
	"io"

	"github.com/AlecAivazis/survey/v2"
	"github.com/AlecAivazis/survey/v2/terminal"
)

// Survey is the interactive Prompter. It always passes its streams to survey
// (WithStdio) so it never reads the process's standard input behind the
// command's back.
type Survey struct {
	in  terminal.FileReader
	out terminal.FileWriter
	err io.Writer
}

// NewSurvey returns a Prompter on a terminal, or an error when in/out are not files.
func NewSurvey(in io.Reader, out, errOut io.Writer) (*Survey, error) {
	fin, ok1 := in.(terminal.FileReader)
	fout, ok2 := out.(terminal.FileWriter)
	if !ok1 || !ok2 {
		return nil, errors.New("prompting needs a terminal")
	}
	return &Survey{in: fin, out: fout, err: errOut}, nil
}

func (s *Survey) ask(p survey.Prompt, resp any) error {
	err := survey.AskOne(p, resp, survey.WithStdio(s.in, s.out, s.err))
	if errors.Is(err, terminal.InterruptErr) {
		return ErrInterrupted
	}
	if err != nil {
		return fmt.Errorf("prompt: %w", err)
	}
	return nil
}

// Tell writes text where survey draws its questions' context: standard error.
func (s *Survey) Tell(text string) { fmt.Fprint(s.err, text) }

func (s *Survey) Input(message, def string) (string, error) {
	var ans string
	err := s.ask(&survey.Input{Message: message, Default: def}, &ans)
	return ans, err
}

func (s *Survey) Select(message string, options []string, def string) (string, error) {
	var ans string
	p := &survey.Select{Message: message, Options: options}
	if def != "" {
		p.Default = def
	}
	err := s.ask(p, &ans)
	return ans, err
}

func (s *Survey) Confirm(message string, def bool) (bool, error) {
	var ans bool
	err := s.ask(&survey.Confirm{Message: message, Default: def}, &ans)
	return ans, err
}
