package prompt

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Mock is a queued Prompter for tests: each expected question is registered
// with its answer; an unexpected question fails, and Verify reports questions
// that were never asked.
type Mock struct {
	mu      sync.Mutex
	queue   []answer
	Asked   []string
	Told    []string
	failure error
}

type answer struct {
	kind, contains, value string
	yes                   bool
}

func (m *Mock) ExpectInput(contains, value string)  { m.push(answer{"input", contains, value, false}) }
func (m *Mock) ExpectSelect(contains, value string) { m.push(answer{"select", contains, value, false}) }
func (m *Mock) ExpectConfirm(contains string, yes bool) {
	m.push(answer{"confirm", contains, "", yes})
}

func (m *Mock) push(a answer) { m.mu.Lock(); m.queue = append(m.queue, a); m.mu.Unlock() }

func (m *Mock) next(kind, message string) (answer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.Asked = append(m.Asked, message)
	if len(m.queue) == 0 {
		m.failure = fmt.Errorf("unexpected %s prompt %q", kind, message)
		return answer{}, m.failure
	}
	a := m.queue[0]
	if a.kind != kind || !strings.Contains(message, a.contains) {
		m.failure = fmt.Errorf("prompt %s %q does not match expected %s containing %q", kind, message, a.kind, a.contains)
		return answer{}, m.failure
	}
	m.queue = m.queue[1:]
	return a, nil
}

// Tell records what a workflow showed before its questions.
func (m *Mock) Tell(text string) { m.mu.Lock(); m.Told = append(m.Told, text); m.mu.Unlock() }

func (m *Mock) Input(message, _ string) (string, error) {
	a, err := m.next("input", message)
	return a.value, err
}

func (m *Mock) Select(message string, options []string, _ string) (string, error) {
	a, err := m.next("select", message)
	if err == nil && !slices.Contains(options, a.value) {
		return "", fmt.Errorf("answer %q is not one of %v", a.value, options)
	}
	return a.value, err
}

func (m *Mock) Confirm(message string, _ bool) (bool, error) {
	a, err := m.next("confirm", message)
	return a.yes, err
}

// Verify returns an error if a prompt failed or an expected one was not asked.
func (m *Mock) Verify() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failure != nil {
		return m.failure
	}
	if len(m.queue) > 0 {
		return fmt.Errorf("%d expected prompt(s) never asked, first: %s %q", len(m.queue), m.queue[0].kind, m.queue[0].contains)
	}
	return nil
}
