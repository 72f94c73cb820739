package doshii

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/keys"
	"github.com/posgate/posgate/internal/metrics"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/token"
	"github.com/posgate/posgate/internal/ttlcache"
)

// Vendor is a doshii vendor as the checks see it.
type Vendor struct {
	ID      string // "dv_…", the name posgate uses in principals and audit events
	APIName string // the `vendor` header
}

// Venue is a location authenticated by a location JWT or a raw location token.
type Venue struct {
	Vendor   Vendor
	Location *store.DoshiiLocation // read-only snapshot (at most locationCacheTTL old)
	// ExpiresAt is when the presented JWT leaves the accepted window (timestamp + past window);
	// zero for a raw location token, which does not expire.
	ExpiresAt time.Time
}

// Principal is the venue as the gateway sees it: bound to its location, so tenant binding refuses
// any other location named in the path, the doshii-location-id header or the body.
func (v *Venue) Principal() *auth.Principal {
	return &auth.Principal{
		Dialect:      Dialect,
		Means:        AuthVenue,
		Subject:      v.Location.ID,
		Vendor:       v.Vendor.ID,
		Organisation: v.Location.OrganisationID,
		Location:     v.Location.ID,
		Claims:       map[string]any{"vendor": v.Vendor.APIName},
		ExpiresAt:    v.ExpiresAt,
	}
}

// Verifier holds every doshii credential check, behind one throttle (scope "doshii.vendor"):
// the REST authenticator and onboarding use it now, the websocket handlers later.
//
// Throttling: each check first consults the per-address block, then — once the vendor is known —
// the (address, vendor) and vendor-wide blocks. A failure a key guesser would produce (no such
// vendor, wrong vendor key, malformed JWT, wrong alg, bad signature, unknown location token) is
// counted; a claim problem in a correctly signed JWT (stale timestamp, missing claim) comes from
// the key holder and is not, so a POS with a drifting clock cannot lock its vendor out.
type Verifier struct {
	st       store.Doshii
	sealer   keys.Sealer
	clk      clock.Clock
	throttle *auth.Throttle
	audit    func(context.Context, store.AuditEvent)
	log      *slog.Logger
	window   Window

	vendors   *ttlcache.Cache[string, *vendorEntry]            // by api name
	locations *ttlcache.Cache[[32]byte, *store.DoshiiLocation] // by SHA-256 of the location token
	byID      *ttlcache.Cache[string, *store.DoshiiLocation]   // by id (the platform events API)
	// forgets counts the location forgets. A location read from the store is cached only if no
	// forget came between the read's start and its Put (checked and put under forgetMu): a read
	// that raced a disable would otherwise cache the copy from before it for a whole lifetime,
	// after the change was announced.
	forgetMu sync.Mutex
	forgets  uint64
}

func newVerifier(svc *app.Services, past, future time.Duration) *Verifier {
	return &Verifier{
		st:        svc.Store,
		sealer:    svc.Sealer,
		clk:       svc.Clock,
		throttle:  svc.Throttle,
		audit:     svc.Audit,
		log:       svc.Log,
		window:    Window{Past: past, Future: future},
		vendors:   ttlcache.New[string, *vendorEntry](svc.Clock, vendorCacheTTL, cacheMax),
		locations: ttlcache.New[[32]byte, *store.DoshiiLocation](svc.Clock, locationCacheTTL, cacheMax),
		byID:      ttlcache.New[string, *store.DoshiiLocation](svc.Clock, locationCacheTTL, cacheMax),
	}
}

// Window is the accepted timestamp window of location and vendor JWTs.
func (v *Verifier) Window() Window { return v.window }

// Errors of the checks. Messages are what callers see; none names a secret.
func unauthenticated(code, msg string) *errs.Error { return errs.New(errs.Unauthenticated, code, msg) }

var (
	errUnknownVendor  = unauthenticated("unknown_vendor", "invalid vendor credentials")
	errWrongVendorKey = unauthenticated("invalid_vendor_key", "invalid vendor credentials")
	errNoLiveKey      = unauthenticated("no_vendor_key", "the vendor has no valid key")
	errUnknownToken   = unauthenticated("invalid_location_token", "invalid location token")
	// A disabled vendor or location is told so only after its credential verified: a guesser
	// learns nothing from it.
	errVendorDisabled   = errs.New(errs.Forbidden, "vendor_disabled", "the vendor is disabled")
	errLocationDisabled = errs.New(errs.Forbidden, "location_disabled", "the location is disabled")
)

// disabled refuses a verified credential of a disabled vendor or location: audited, not counted
// (it is the key holder's, not a guesser's).
func (v *Verifier) disabled(ctx context.Context, addr string, vendor Vendor, what string, err *errs.Error) error {
	v.audit(context.WithoutCancel(ctx), store.AuditEvent{Actor: "vendor:" + vendor.ID, Action: "doshii.auth_failed",
		Target: what, Address: addr, Outcome: "denied", Detail: err.Code})
	return err
}

// AuthenticateVenue checks a location JWT presented with the `vendor` header vendorName from
// client address addr: HS256 with one of that vendor's unexpired keys, {locationToken, timestamp}
// within the window, and the location must belong to that vendor.
func (v *Verifier) AuthenticateVenue(ctx context.Context, addr, vendorName, raw string) (_ *Venue, err error) {
	defer func() { observe(err) }()
	ve, err := v.begin(ctx, addr, vendorName)
	if err != nil {
		return nil, err
	}
	var claims *LocationClaims
	err = v.withKeys(ctx, ve, func(keys [][]byte) error {
		var e error
		claims, e = VerifyLocationJWT(raw, keys, v.clk.Now(), v.window)
		return e
	})
	if err != nil {
		return nil, v.refuse(ctx, addr, ve, "location_jwt", err, false)
	}
	// From here on the JWT is authentic: what fails is the key holder's, not a guesser's.
	loc, err := v.locationByToken(ctx, claims.LocationToken)
	if err != nil {
		return nil, v.refuse(ctx, addr, ve, "location_jwt", err, true)
	}
	if loc.VendorID != ve.vendor.ID {
		// Another vendor's location: answered exactly like an unknown token, so a vendor learns
		// nothing about tokens that are not its own.
		return nil, v.refuse(ctx, addr, ve, "location_jwt", errUnknownToken, true)
	}
	if ve.disabled {
		return nil, v.disabled(ctx, addr, ve.vendor, "location_jwt", errVendorDisabled)
	}
	if loc.Disabled {
		return nil, v.disabled(ctx, addr, ve.vendor, "location_jwt", errLocationDisabled)
	}
	return &Venue{Vendor: ve.vendor, Location: loc, ExpiresAt: claims.Timestamp.Add(v.window.Past)}, nil
}

// AuthenticateVendorJWT checks a cloud-POS vendor JWT {"vendor","timestamp"} (the
// /vendor/socket?token=…&vendor=… handshake) signed with one of vendorName's unexpired keys.
// It returns the vendor and when the JWT leaves the window.
func (v *Verifier) AuthenticateVendorJWT(ctx context.Context, addr, vendorName, raw string) (_ *Vendor, _ time.Time, err error) {
	defer func() { observe(err) }()
	ve, err := v.begin(ctx, addr, vendorName)
	if err != nil {
		return nil, time.Time{}, err
	}
	var claims *VendorClaims
	err = v.withKeys(ctx, ve, func(keys [][]byte) error {
		var e error
		claims, e = VerifyVendorJWT(raw, keys, ve.vendor.APIName, v.clk.Now(), v.window)
		return e
	})
	if err != nil {
		return nil, time.Time{}, v.refuse(ctx, addr, ve, "vendor_jwt", err, false)
	}
	if ve.disabled {
		return nil, time.Time{}, v.disabled(ctx, addr, ve.vendor, "vendor_jwt", errVendorDisabled)
	}
	vendor := ve.vendor
	return &vendor, claims.Timestamp.Add(v.window.Past), nil
}

// VendorJWTKey returns the id of the vendor key that signed raw, a vendor JWT that
// AuthenticateVendorJWT accepted a moment ago ("" when none of the cached keys does any more).
// A cloud socket remembers it: the socket lives only as long as that key verifies.
func (v *Verifier) VendorJWTKey(ctx context.Context, vendorName, raw string) (string, error) {
	ve, err := v.vendor(ctx, vendorName)
	if err != nil {
		return "", err
	}
	now := v.clk.Now()
	for _, k := range ve.keys {
		if k.live(now) {
			if _, err := token.VerifyHS256(raw, [][]byte{k.secret}); err == nil {
				return k.id, nil
			}
		}
	}
	return "", nil
}

// VendorKeyLive reports whether the vendor's key keyID still verifies at now: it exists and its
// rotation overlap has not ended. The vendor is read from the cache, which a rotation on any
// replica empties; an unknown vendor or a store failure is an error (the caller decides nothing).
func (v *Verifier) VendorKeyLive(ctx context.Context, vendorName, keyID string) (bool, error) {
	ve, err := v.vendor(ctx, vendorName)
	if err != nil {
		return false, err
	}
	now := v.clk.Now()
	for _, k := range ve.keys {
		if k.id == keyID {
			return k.live(now), nil
		}
	}
	return false, nil
}

// AuthenticateLocationToken checks a raw location token (the on-premises
// /pos/socket?token=… handshake). The location's vendor is returned with it.
func (v *Verifier) AuthenticateLocationToken(ctx context.Context, addr, raw string) (_ *Venue, err error) {
	defer func() { observe(err) }()
	if err := v.throttle.Check(ctx, ThrottleScope, addr, ""); err != nil {
		return nil, err
	}
	if raw == "" || len(raw) > maxLocationToken {
		return nil, v.refuse(ctx, addr, nil, "location_token", errUnknownToken, false)
	}
	loc, err := v.locationByToken(ctx, raw)
	if err != nil {
		return nil, v.refuse(ctx, addr, nil, "location_token", err, false)
	}
	vd, err := v.st.GetDoshiiVendor(ctx, loc.VendorID)
	if err != nil {
		return nil, storeError(err)
	}
	vendor := Vendor{ID: vd.ID, APIName: vd.APIName}
	if vd.Disabled {
		return nil, v.disabled(ctx, addr, vendor, "location_token", errVendorDisabled)
	}
	if loc.Disabled {
		return nil, v.disabled(ctx, addr, vendor, "location_token", errLocationDisabled)
	}
	return &Venue{Vendor: vendor, Location: loc}, nil
}

// AuthenticateVendorKey checks the onboarding credential: the raw vendor key as a Bearer token,
// compared in constant time with the SHA-256 of each of the vendor's unexpired keys.
func (v *Verifier) AuthenticateVendorKey(ctx context.Context, addr, vendorName, bearer string) (_ *Vendor, err error) {
	defer func() { observe(err) }()
	ve, err := v.begin(ctx, addr, vendorName)
	if err != nil {
		return nil, err
	}
	check := func(e *vendorEntry) bool {
		h := sha256.Sum256([]byte(bearer))
		now := v.clk.Now()
		match := 0
		for _, k := range e.keys {
			// Every live key is compared; the result does not depend on which one matched.
			eq := subtle.ConstantTimeCompare(h[:], k.hash)
			if k.live(now) {
				match |= eq
			}
		}
		return match == 1
	}
	if !check(ve) {
		// A key created on another replica a moment ago is not in our cache yet.
		if fresh, err := v.reload(ctx, ve); err == nil && fresh != nil && check(fresh) {
			ve = fresh
		} else {
			return nil, v.refuse(ctx, addr, ve, "vendor_key", errWrongVendorKey, false)
		}
	}
	if ve.disabled {
		return nil, v.disabled(ctx, addr, ve.vendor, "vendor_key", errVendorDisabled)
	}
	vendor := ve.vendor
	return &vendor, nil
}

// begin runs the checks every vendor-named credential starts with: the per-address block, the
// vendor lookup, then the (address, vendor) and vendor-wide blocks.
func (v *Verifier) begin(ctx context.Context, addr, vendorName string) (*vendorEntry, error) {
	if err := v.throttle.Check(ctx, ThrottleScope, addr, ""); err != nil {
		return nil, err
	}
	if vendorName == "" || len(vendorName) > maxAPIName {
		return nil, v.refuse(ctx, addr, nil, "vendor", errUnknownVendor, false)
	}
	ve, err := v.vendor(ctx, vendorName)
	if err != nil {
		return nil, v.refuse(ctx, addr, nil, "vendor", err, false)
	}
	if err := v.throttle.Check(ctx, ThrottleScope, addr, ve.vendor.ID); err != nil {
		return nil, err
	}
	return ve, nil
}

// withKeys runs verify with the vendor's live keys. When the signature does not verify with the
// cached keys and they were loaded more than a moment ago, the vendor is reloaded once: a key
// rotated on another replica must work here at once.
func (v *Verifier) withKeys(ctx context.Context, ve *vendorEntry, verify func([][]byte) error) error {
	attempt := func(e *vendorEntry) error {
		keys := e.liveSecrets(v.clk.Now())
		if len(keys) == 0 {
			return errNoLiveKey
		}
		return verify(keys)
	}
	err := attempt(ve)
	if err == nil || !(isSignatureFailure(err) || err == errNoLiveKey) {
		return err
	}
	// At most one reload per vendor per second, however many bad signatures arrive.
	fresh, rerr := v.reload(ctx, ve)
	if rerr != nil || fresh == nil {
		return err
	}
	return attempt(fresh)
}

// observe counts one verification in posgate_token_verifications_total{dialect="doshii"}. The
// outcome is one of a small fixed set: ok, throttled, error, unknown_vendor, invalid_vendor_key,
// no_vendor_key, invalid_location_token, invalid_claims, alg, signature, malformed.
func observe(err error) {
	metrics.TokenVerifications.WithLabelValues(Dialect, outcomeOf(err)).Inc()
}

func outcomeOf(err error) string {
	if err == nil {
		return "ok"
	}
	e, ok := errs.As(err)
	if !ok {
		return "error"
	}
	switch e.Kind {
	case errs.Throttled:
		return "throttled"
	case errs.Unauthenticated:
	default:
		return "error"
	}
	if e.Code != "invalid_jwt" {
		return e.Code
	}
	var ve *token.VerifyError
	if errors.As(err, &ve) {
		switch ve.Reason {
		case token.ReasonAlg, token.ReasonMissingAlg:
			return "alg"
		case token.ReasonSignature, token.ReasonUnknownKey:
			return "signature"
		}
	}
	return "malformed"
}

func isSignatureFailure(err error) bool {
	var ve *token.VerifyError
	return errors.As(err, &ve) && (ve.Reason == token.ReasonSignature || ve.Reason == token.ReasonUnknownKey)
}

// refuse classifies a failed check: store outages pass through untouched (they are not the
// caller's fault and must not count); everything else becomes a 401 and is audited. It is counted
// against the address (and the vendor when known) unless it is a claim problem of a correctly
// signed JWT (a claimError, or signed set for failures found after the signature verified): those
// come from the key holder, not from a guesser. It returns the error to answer with.
func (v *Verifier) refuse(ctx context.Context, addr string, ve *vendorEntry, what string, err error, signed bool) error {
	if e, ok := errs.As(err); ok && (e.Kind == errs.Unavailable || e.Kind == errs.Internal) {
		return e // store errors were classified where they happened
	}
	var out *errs.Error
	var ce *claimError
	switch {
	case errors.As(err, &ce):
		out, signed = errs.Wrap(errs.Unauthenticated, "invalid_claims", ce.msg, err), true
	default:
		var ok bool
		if out, ok = errs.As(err); !ok || out.Kind != errs.Unauthenticated {
			out = errs.Wrap(errs.Unauthenticated, "invalid_jwt", verifyErrorMessage(err), err)
		}
	}
	identity, actor := "", "anonymous"
	if ve != nil {
		identity, actor = ve.vendor.ID, "vendor:"+ve.vendor.ID
	}
	// Counted and audited even if the caller has hung up already: a guesser must not escape the
	// count by closing the connection as soon as the request is sent.
	ctx = context.WithoutCancel(ctx)
	if !signed {
		if ferr := v.throttle.Fail(ctx, ThrottleScope, addr, identity); ferr != nil {
			v.log.LogAttrs(ctx, slog.LevelWarn, "doshii: throttle count failed", slog.String("error", ferr.Error()))
		}
	}
	v.audit(ctx, store.AuditEvent{Actor: actor, Action: "doshii.auth_failed", Target: what, Address: addr,
		Outcome: "denied", Detail: out.Code})
	return out
}

// vendor returns the cached vendor named apiName, loading it on a miss. Unknown names are not
// cached (a guesser's misses are bounded by the throttle; a vendor created a moment ago must work).
func (v *Verifier) vendor(ctx context.Context, apiName string) (*vendorEntry, error) {
	if e, ok := v.vendors.Get(apiName); ok {
		return e, nil
	}
	return v.loadVendor(ctx, apiName)
}

func (v *Verifier) loadVendor(ctx context.Context, apiName string) (*vendorEntry, error) {
	d, err := v.st.GetDoshiiVendorByName(ctx, apiName)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errUnknownVendor
	}
	if err != nil {
		return nil, storeError(err)
	}
	e := &vendorEntry{vendor: Vendor{ID: d.ID, APIName: d.APIName}, disabled: d.Disabled, loaded: v.clk.Now()}
	for _, k := range d.Keys {
		plain, err := v.sealer.Open(k.Sealed, vendorKeyAD(d.ID, k.ID))
		if err != nil {
			// A key that does not open (wrong master key, moved row) cannot verify anything;
			// the others still can. Logged without any key material.
			v.log.LogAttrs(ctx, slog.LevelError, "doshii: vendor key does not open",
				slog.String("vendor", d.ID), slog.String("key", k.ID), slog.String("error", err.Error()))
			continue
		}
		e.keys = append(e.keys, cachedKey{id: k.ID, secret: plain, hash: k.Hash, notAfter: k.NotAfter})
	}
	v.vendors.Put(apiName, e)
	return e, nil
}

// reload refetches ve's vendor unless it was loaded less than a second ago (then nil, nil).
func (v *Verifier) reload(ctx context.Context, ve *vendorEntry) (*vendorEntry, error) {
	if v.clk.Now().Sub(ve.loaded) < time.Second {
		return nil, nil
	}
	return v.loadVendor(ctx, ve.vendor.APIName)
}

// forgetVendor drops a vendor from the cache (after a rotation).
func (v *Verifier) forgetVendor(apiName string) { v.vendors.Delete(apiName) }

// locationByToken finds the location whose token hashes like raw (cached for a few seconds).
func (v *Verifier) locationByToken(ctx context.Context, raw string) (*store.DoshiiLocation, error) {
	h := sha256.Sum256([]byte(raw))
	if l, ok := v.locations.Get(h); ok {
		return l, nil
	}
	gen := v.forgetGen()
	l, err := v.st.GetDoshiiLocationByTokenHash(ctx, h[:])
	if errors.Is(err, store.ErrNotFound) {
		return nil, errUnknownToken
	}
	if err != nil {
		return nil, storeError(err)
	}
	v.putUnlessForgotten(gen, func() { v.locations.Put(h, l) })
	return l, nil
}

// locationByID returns location id (cached for a few seconds, as by token): the platform events
// API names a location on every call, and a publish then costs no location read. An unknown id
// is not cached (a location created a moment ago must work); store.ErrNotFound is returned as is.
func (v *Verifier) locationByID(ctx context.Context, id string) (*store.DoshiiLocation, error) {
	if l, ok := v.byID.Get(id); ok {
		return l, nil
	}
	gen := v.forgetGen()
	l, err := v.st.GetDoshiiLocation(ctx, id)
	if err != nil {
		return nil, err
	}
	v.putUnlessForgotten(gen, func() { v.byID.Put(id, l) })
	return l, nil
}

// forgetGen is the count of location forgets so far, read before a store read.
func (v *Verifier) forgetGen() uint64 {
	v.forgetMu.Lock()
	defer v.forgetMu.Unlock()
	return v.forgets
}

// putUnlessForgotten runs put unless a location was forgotten since gen was read.
func (v *Verifier) putUnlessForgotten(gen uint64, put func()) {
	v.forgetMu.Lock()
	defer v.forgetMu.Unlock()
	if v.forgets == gen {
		put()
	}
}

// forgetLocation drops location id from the caches (after a token rotation, a disable or enable,
// a deletion: Module.announce, here and on every replica).
func (v *Verifier) forgetLocation(id string) {
	v.forgetMu.Lock()
	defer v.forgetMu.Unlock()
	v.forgets++
	v.locations.DeleteFunc(func(_ [32]byte, l *store.DoshiiLocation) bool { return l.ID == id })
	v.byID.Delete(id)
}

// forgetAll empties the caches.
func (v *Verifier) forgetAll() {
	v.forgetMu.Lock()
	defer v.forgetMu.Unlock()
	v.forgets++
	v.vendors.Clear()
	v.locations.Clear()
	v.byID.Clear()
}

// vendorKeyAD is the additional data a vendor key is sealed with: the sealed blob opens only in
// its own row.
func vendorKeyAD(vendorID, keyID string) []byte {
	return []byte("vendor-key:" + vendorID + ":" + keyID)
}

// ---------------------------------------------------------------------------------------------
// What the vendor cache holds: a vendor with its keys opened once per load.

type cachedKey struct {
	id       string
	secret   []byte // the vendor key in clear; never logged
	hash     []byte // SHA-256 of the key (onboarding bearer check)
	notAfter *time.Time
}

// live reports whether the key verifies at now: no end, or an end not reached yet.
func (k cachedKey) live(now time.Time) bool { return k.notAfter == nil || now.Before(*k.notAfter) }

type vendorEntry struct {
	vendor   Vendor
	disabled bool
	keys     []cachedKey
	loaded   time.Time
}

// liveSecrets returns the keys that verify at now. NotAfter is evaluated on every call, so an old
// key stops verifying at the end of its overlap even while the entry is cached.
func (e *vendorEntry) liveSecrets(now time.Time) [][]byte {
	out := make([][]byte, 0, len(e.keys))
	for _, k := range e.keys {
		if k.live(now) {
			out = append(out, k.secret)
		}
	}
	return out
}
