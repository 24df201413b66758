// Package exitcode maps errors to process exit codes and one-line messages.
//
// Codes follow istioctl's sysexits use so scripts written for istioctl keep
// working: 64 usage, 65 bad data, 69 unavailable, 77 no permission, 79 analysis
// blocked. kubectl-diff semantics apply to --dry-run=server: 1 means "changes".
package exitcode

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
)

const (
	OK          = 0
	Failure     = 1
	Changes     = 1 // --dry-run=server found differences (kubectl diff)
	Usage       = 64
	DataErr     = 65
	Unavailable = 69
	NoPerm      = 77
	Blocked     = 79
	Interrupted = 130
)

// Error carries an exit code with the error it describes.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// New wraps err with an exit code.
func New(code int, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Code: code, Err: err}
}

// Usagef reports a bad flag or argument (exit 64).
func Usagef(format string, a ...any) error { return New(Usage, fmt.Errorf(format, a...)) }

// Dataf reports bad input data such as a malformed file (exit 65).
func Dataf(format string, a ...any) error { return New(DataErr, fmt.Errorf(format, a...)) }

// Blockedf reports findings that stop a plan or analysis (exit 79).
func Blockedf(format string, a ...any) error { return New(Blocked, fmt.Errorf(format, a...)) }

// Silent is returned when the command already printed everything the user
// needs (for example a diff) and only the exit code remains to be set.
type Silent struct{ Code int }

func (s Silent) Error() string { return fmt.Sprintf("exit status %d", s.Code) }

// Describe returns the exit code and a one-line message for err. Errors from
// client-go are turned into what the user should do about them.
func Describe(err error) (int, string) {
	if err == nil {
		return OK, ""
	}
	var s Silent
	if errors.As(err, &s) {
		return s.Code, ""
	}
	code := Failure
	var e *Error
	if errors.As(err, &e) {
		code = e.Code
	}
	msg := OneLine(err.Error())
	switch {
	case apierrors.IsUnauthorized(err):
		return NoPerm, msg + "; your credentials were rejected: refresh them (or pick another --context) and retry"
	case apierrors.IsForbidden(err) && strings.Contains(msg, " cannot "):
		// RBAC denials read `User "x" cannot create resource …`; other
		// Forbidden answers (exceeded quota, admission) keep their own text.
		return NoPerm, msg + "; ask a cluster admin for this permission (kubectl auth can-i lists yours)"
	case code == Failure && (apierrors.IsInvalid(err) || strings.Contains(msg, "denied the request")):
		// The API server's schema or an admission webhook (Istio's
		// validation) refused the object as written.
		return DataErr, msg + "; fix the object and re-run"
	case code == Failure && strings.Contains(msg, "failed calling webhook"):
		return Unavailable, msg + "; the webhook's server is down or unreachable: check it, or the webhook configuration (kubectl get mutatingwebhookconfigurations,validatingwebhookconfigurations)"
	case meta.IsNoMatchError(err):
		return Unavailable, msg + "; the CRD is not installed in the cluster (Istio CRDs come with kubectl mesh install)"
	case isUnreachable(err):
		// A bare client error reads better as what it means; a wrapped one
		// keeps its context (e.g. which change set to undo).
		var ue *url.Error
		if errors.As(err, &ue) && OneLine(ue.Error()) == msg {
			msg = fmt.Sprintf("cannot reach the Kubernetes API server at %s: %s", host(ue.URL), rootCause(ue.Err))
		}
		return Unavailable, msg + "; check that the cluster is running and that --kubeconfig/--context point at it"
	}
	return code, msg
}

func isUnreachable(err error) bool {
	var ne net.Error
	var ue *url.Error
	var oe *net.OpError
	return errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &oe) || errors.As(err, &ue) && errors.As(err, &ne)
}

// OneLine keeps the first line of multi-line errors (Kubernetes aggregates
// some errors over several lines), says how many it left out, and trims
// surrounding space.
func OneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		rest := strings.Count(s[i:], "\n")
		s = strings.TrimSpace(s[:i]) + fmt.Sprintf(" (and %d more lines)", rest)
	}
	return s
}

func host(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Scheme + "://" + u.Host
}

// rootCause is the innermost error text ("connection refused").
func rootCause(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}
