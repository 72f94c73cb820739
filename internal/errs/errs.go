// Package errs gives posgate's errors a Kind. Mechanisms return *Error values; each dialect maps
// kinds (and, where its wire format needs it, codes) to its own documented error shape in one place.
package errs

import (
	"errors"
	"fmt"
	"time"
)

// Kind classifies an error by what the caller should do about it.
type Kind int

const (
	// Internal is a bug or an unexpected failure; details are logged, never shown.
	Internal Kind = iota
	// BadInput: the request is malformed or a field is invalid (400).
	BadInput
	// Unauthenticated: no credential, or a credential that does not verify (401).
	Unauthenticated
	// Forbidden: a valid credential that may not do this (403).
	Forbidden
	// NotFound: the named resource does not exist (404).
	NotFound
	// Conflict: the resource already exists or changed under us (409).
	Conflict
	// Throttled: too many attempts; retry after RetryAfter (429).
	Throttled
	// Unavailable: a dependency (the store) is down; retry later (503).
	Unavailable
	// TooLarge: the request body is over the limit (413).
	TooLarge
	// UnsupportedMediaType: the body's Content-Type or Content-Encoding is not one this endpoint
	// reads (415).
	UnsupportedMediaType
)

var kindNames = [...]string{"internal", "bad_input", "unauthenticated", "forbidden", "not_found", "conflict", "throttled", "unavailable", "too_large", "unsupported_media_type"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is a classified error. Code is a short machine-readable reason that dialects may use to pick
// their own wording (for example "invalid_grant", "expired", "insufficient_scope"); Message is safe to
// show to the caller and never contains a secret.
type Error struct {
	Kind       Kind
	Code       string
	Message    string
	RetryAfter time.Duration // for Throttled and Unavailable
	Err        error         // the cause, for logs only
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %s: %v", e.Kind, e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s: %s", e.Kind, e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an *Error of the given kind.
func New(kind Kind, code, message string) *Error {
	return &Error{Kind: kind, Code: code, Message: message}
}

// Wrap returns an *Error of the given kind with cause err.
func Wrap(kind Kind, code, message string, err error) *Error {
	return &Error{Kind: kind, Code: code, Message: message, Err: err}
}

// KindOf returns the Kind of err, or Internal when err carries none.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}

// CodeOf returns the Code of err, or "" when err carries none.
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// As returns err as an *Error when it is one.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// HTTPStatus is the default status for a kind, for endpoints that follow no dialect.
func HTTPStatus(k Kind) int {
	switch k {
	case BadInput:
		return 400
	case Unauthenticated:
		return 401
	case Forbidden:
		return 403
	case NotFound:
		return 404
	case Conflict:
		return 409
	case Throttled:
		return 429
	case Unavailable:
		return 503
	case TooLarge:
		return 413
	case UnsupportedMediaType:
		return 415
	default:
		return 500
	}
}
