package store

import (
	"context"
	"time"
)

// ---------------------------------------------------------------------------------------------
// Console sessions: people signed in to the web console, shared by every replica.

// ConsoleSession is one signed-in browser. It is found by the SHA-256 of its cookie value (a
// 256-bit random value the store never sees), so a copy of the table signs nobody in.
type ConsoleSession struct {
	Hash []byte // SHA-256 of the cookie value; unique
	// Binding is a keyed fingerprint of the credential the person signed in with. A caller that
	// finds it differs from the current credential's treats the session as ended.
	Binding       []byte
	CreatedAt     time.Time
	SeenAt        time.Time // last request that extended the idle expiry
	IdleExpiresAt time.Time // SeenAt + the idle limit, never after ExpiresAt
	ExpiresAt     time.Time // absolute: CreatedAt + the longest a session may last
	Flash         string    // a one-time notice for the next page ("" when none)
}

// ConsoleSessions stores console sessions. A session is live at t while t is before both
// IdleExpiresAt and ExpiresAt; lookups and updates treat any other session as absent.
type ConsoleSessions interface {
	// CreateConsoleSession stores s (ErrConflict when its Hash exists). Hash and Binding must not
	// be empty (else an error that is none of the sentinels, and nothing is stored).
	CreateConsoleSession(ctx context.Context, s *ConsoleSession) error
	// GetConsoleSession returns the session with that hash if it is live at now; ErrNotFound
	// otherwise.
	GetConsoleSession(ctx context.Context, hash []byte, now time.Time) (*ConsoleSession, error)
	// TouchConsoleSession sets SeenAt to at and IdleExpiresAt to idleExpiresAt (capped at
	// ExpiresAt) if the session is live at at; ErrNotFound otherwise.
	TouchConsoleSession(ctx context.Context, hash []byte, at, idleExpiresAt time.Time) error
	// SetConsoleFlash sets the session's notice (replacing any); ErrNotFound when it is gone.
	SetConsoleFlash(ctx context.Context, hash []byte, flash string) error
	// ClearConsoleFlash clears the session's notice if it still is flash and reports whether this
	// call cleared it, so of several readers of one notice exactly one shows it.
	ClearConsoleFlash(ctx context.Context, hash []byte, flash string) (bool, error)
	// DeleteConsoleSession ends a session (deleting a missing one is not an error).
	DeleteConsoleSession(ctx context.Context, hash []byte) error
	// DeleteConsoleSessionsExpiredBefore deletes the sessions no longer live at t and returns how
	// many.
	DeleteConsoleSessionsExpiredBefore(ctx context.Context, t time.Time) (int, error)
}
