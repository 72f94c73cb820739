package chimpy

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/oauth"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
)

// Limits on what a user may be given.
const (
	MaxUsernameBytes = 256
	MinPasswordBytes = 8
)

// User is a user as the admin API shows it (never the password hash).
type User struct {
	ID        string    `json:"id"`
	Username  string    `json:"username"`
	Disabled  bool      `json:"disabled"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// RevokedSessions is how many sign-in sessions (refresh families) a disable or password change
	// revoked; absent otherwise.
	RevokedSessions *int `json:"revoked_sessions,omitempty"`
}

func view(u *store.User) *User {
	return &User{ID: u.ID, Username: u.Username, Disabled: u.Disabled, CreatedAt: u.CreatedAt.UTC(), UpdatedAt: u.UpdatedAt.UTC()}
}

// ValidUsername reports why a username cannot be used ("" if it can). Usernames are compared
// exactly as given, so posgate refuses what would make two names look alike by accident: leading
// or trailing white space, control characters, invalid UTF-8.
func ValidUsername(s string) string {
	switch {
	case s == "":
		return "username is required"
	case len(s) > MaxUsernameBytes:
		return "username is too long"
	case !utf8.ValidString(s) || strings.ContainsFunc(s, isControl):
		return "username contains invalid characters"
	case strings.TrimSpace(s) != s:
		return "username may not start or end with white space"
	}
	return ""
}

// ValidPassword reports why a password cannot be used ("" if it can): at least 8 bytes, at most
// secret.MaxPasswordBytes, valid UTF-8 without control characters (the token endpoint refuses
// those, so such a password could never sign in).
func ValidPassword(s string) string {
	switch {
	case len(s) < MinPasswordBytes:
		return "password must be at least 8 bytes"
	case len(s) > secret.MaxPasswordBytes:
		return "password is too long"
	case !utf8.ValidString(s) || strings.ContainsFunc(s, isControl):
		return "password contains invalid characters"
	}
	return ""
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

type users struct{ svc *app.Services }

// adminError writes the admin API's error shape: {"error","error_description"} with the kind's status.
func adminError(w http.ResponseWriter, err error) {
	e, ok := errs.As(err)
	if !ok || e.Kind == errs.Internal {
		httpx.WriteError(w, http.StatusInternalServerError, "internal", "internal error")
		return
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", "2")
	}
	httpx.WriteError(w, errs.HTTPStatus(e.Kind), e.Code, e.Message)
}

func storeErr(err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errs.New(errs.NotFound, "not_found", "no such user")
	case errors.Is(err, store.ErrConflict):
		return errs.New(errs.Conflict, "conflict", "a user with this username exists")
	case errors.Is(err, store.ErrUnavailable):
		return &errs.Error{Kind: errs.Unavailable, Code: "unavailable", Message: "the store is unavailable", RetryAfter: 2 * time.Second, Err: err}
	}
	return errs.Wrap(errs.Internal, "internal", "internal error", err)
}

func badInput(msg string) error { return errs.New(errs.BadInput, "invalid_request", msg) }

func (u *users) auditf(r *http.Request, action, target, outcome, detail string) {
	u.svc.Audit(r.Context(), store.AuditEvent{Actor: "admin", Action: action, Target: target,
		Address: auth.Addr(r), Outcome: outcome, Detail: detail})
}

func (u *users) create(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Username *string `json:"username"`
		Password *string `json:"password"`
	}
	if err := httpx.ReadJSON(r, 64<<10, &body, true); err != nil {
		u.auditf(r, "user.create", "", "denied", "invalid request body")
		adminError(w, err)
		return
	}
	if body.Username == nil || body.Password == nil {
		adminError(w, badInput("username and password are required"))
		return
	}
	if msg := ValidUsername(*body.Username); msg != "" {
		adminError(w, badInput(msg))
		return
	}
	if msg := ValidPassword(*body.Password); msg != "" {
		adminError(w, badInput(msg))
		return
	}
	hash, err := secret.HashPassword(*body.Password)
	if err != nil {
		adminError(w, badInput("password cannot be used"))
		return
	}
	now := u.svc.Clock.Now()
	usr := &store.User{ID: secret.NewID("us_"), Username: *body.Username, PasswordHash: hash, CreatedAt: now, UpdatedAt: now}
	if err := u.svc.Store.CreateUser(r.Context(), usr); err != nil {
		u.auditf(r, "user.create", "username:"+*body.Username, "denied", "store: "+errs.KindOf(storeErr(err)).String())
		adminError(w, storeErr(err))
		return
	}
	u.auditf(r, "user.create", "user:"+usr.ID, "ok", "")
	httpx.WriteJSON(w, http.StatusCreated, view(usr))
}

func (u *users) list(w http.ResponseWriter, r *http.Request) {
	all, err := u.svc.Store.ListUsers(r.Context())
	if err != nil {
		adminError(w, storeErr(err))
		return
	}
	out := make([]*User, 0, len(all))
	for _, x := range all {
		out = append(out, view(x))
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"users": out})
}

func (u *users) get(w http.ResponseWriter, r *http.Request) {
	usr, err := u.svc.Store.GetUser(r.Context(), r.PathValue("id"))
	if err != nil {
		adminError(w, storeErr(err))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, view(usr))
}

func (u *users) disable(w http.ResponseWriter, r *http.Request) { u.setDisabled(w, r, true) }
func (u *users) enable(w http.ResponseWriter, r *http.Request)  { u.setDisabled(w, r, false) }

// setDisabled disables (and then revokes every session of) or re-enables a user. Disabling comes
// first, so no new sign-in can start a session after the revocation.
func (u *users) setDisabled(w http.ResponseWriter, r *http.Request, disabled bool) {
	id := r.PathValue("id")
	action := "user.enable"
	if disabled {
		action = "user.disable"
	}
	if err := u.svc.Store.SetUserDisabled(r.Context(), id, disabled, u.svc.Clock.Now()); err != nil {
		u.auditf(r, action, "user:"+id, "denied", errs.KindOf(storeErr(err)).String())
		adminError(w, storeErr(err))
		return
	}
	var revoked *int
	if disabled {
		ids, err := oauth.RevokeUserSessions(r.Context(), u.svc, id, "user disabled")
		if err != nil {
			u.auditf(r, action, "user:"+id, "error", "sessions not revoked")
			adminError(w, err)
			return
		}
		n := len(ids)
		revoked = &n
	}
	u.respond(w, r, id, action, revoked)
}

// password sets a new password and revokes every session of the user.
func (u *users) password(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var body struct {
		Password *string `json:"password"`
	}
	if err := httpx.ReadJSON(r, 64<<10, &body, true); err != nil {
		adminError(w, err)
		return
	}
	if body.Password == nil {
		adminError(w, badInput("password is required"))
		return
	}
	if msg := ValidPassword(*body.Password); msg != "" {
		adminError(w, badInput(msg))
		return
	}
	hash, err := secret.HashPassword(*body.Password)
	if err != nil {
		adminError(w, badInput("password cannot be used"))
		return
	}
	if err := u.svc.Store.SetUserPassword(r.Context(), id, hash, u.svc.Clock.Now()); err != nil {
		u.auditf(r, "user.password", "user:"+id, "denied", errs.KindOf(storeErr(err)).String())
		adminError(w, storeErr(err))
		return
	}
	ids, err := oauth.RevokeUserSessions(r.Context(), u.svc, id, "password changed")
	if err != nil {
		u.auditf(r, "user.password", "user:"+id, "error", "sessions not revoked")
		adminError(w, err)
		return
	}
	n := len(ids)
	u.respond(w, r, id, "user.password", &n)
}

func (u *users) respond(w http.ResponseWriter, r *http.Request, id, action string, revoked *int) {
	detail := ""
	if revoked != nil {
		detail = "sessions revoked: " + strconv.Itoa(*revoked)
	}
	u.auditf(r, action, "user:"+id, "ok", detail)
	usr, err := u.svc.Store.GetUser(r.Context(), id)
	if err != nil {
		adminError(w, storeErr(err))
		return
	}
	v := view(usr)
	v.RevokedSessions = revoked
	httpx.WriteJSON(w, http.StatusOK, v)
}
