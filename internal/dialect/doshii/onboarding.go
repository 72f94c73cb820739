package doshii

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
)

// timeFormat is how Doshii writes times: UTC, milliseconds, "Z".
const timeFormat = "2006-01-02T15:04:05.000Z"

// organisationResponse is the answer to POST {prefix}/organisations.
type organisationResponse struct {
	ID       string `json:"id"`
	VendorID string `json:"vendorId"`
	Name     string `json:"name"`
	organisationFields
	CreatedAt string `json:"createdAt"`
	UpdatedAt string `json:"updatedAt"`
	// Location is the inline location created with the organisation, with its token.
	Location *locationResponse `json:"location,omitempty"`
}

// locationResponse is a location as Doshii shows it. Token is set only in the answer that created
// the location.
type locationResponse struct {
	ID             string `json:"id"`
	Token          string `json:"token,omitempty"`
	OrganisationID string `json:"organisationId"`
	VendorID       string `json:"vendorId"`
	APIVersion     string `json:"apiVersion"`
	Name           string `json:"name"`
	locationFields
	// DisconnectedDate is null while the location is online (a heartbeat within
	// doshii.offline_after), else when it went offline (its creation if it never connected).
	DisconnectedDate *string `json:"disconnectedDate"`
	CreatedAt        string  `json:"createdAt"`
	UpdatedAt        string  `json:"updatedAt"`
	URI              string  `json:"uri"`
}

// headerCredentials reads the `vendor` header and the Bearer token of the Authorization header.
// A request missing either carries no doshii credential (wrapping auth.ErrNoCredential, so a
// gateway route listing several means can tell "absent" from "wrong").
func headerCredentials(r *http.Request) (vendor, bearer string, err error) {
	authz := r.Header.Values("Authorization")
	vendors := r.Header.Values(VendorHeader)
	if len(authz) == 0 || len(vendors) == 0 {
		return "", "", errs.Wrap(errs.Unauthenticated, "no_credential",
			"the authorization (Bearer) and vendor headers are required", auth.ErrNoCredential)
	}
	if len(authz) > 1 || len(vendors) > 1 {
		return "", "", errs.New(errs.Unauthenticated, "ambiguous_credential",
			"the authorization and vendor headers must each be sent once")
	}
	scheme, tok, ok := strings.Cut(authz[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", "", errs.Wrap(errs.Unauthenticated, "no_credential",
			"the authorization header must be a Bearer token", auth.ErrNoCredential)
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", "", errs.New(errs.Unauthenticated, "invalid_token", "the Bearer token is empty")
	}
	return strings.TrimSpace(vendors[0]), tok, nil
}

// onboardingVendor authenticates an onboarding request with the raw vendor key.
func (m *Module) onboardingVendor(r *http.Request) (*Vendor, error) {
	name, bearer, err := headerCredentials(r)
	if err != nil {
		return nil, err
	}
	return m.verifier.AuthenticateVendorKey(r.Context(), auth.Addr(r), name, bearer)
}

// readOnboardingBody enforces JSON only and the body cap.
func (m *Module) readOnboardingBody(r *http.Request) ([]byte, error) {
	if !httpx.IsJSON(r) {
		return nil, badInput("unsupported_content_type", "Content-Type must be application/json")
	}
	return httpx.ReadBody(r, m.cfg.maxBody)
}

// createOrganisation serves POST {prefix}/organisations, with an optional inline location created
// in the same transaction.
func (m *Module) createOrganisation(w http.ResponseWriter, r *http.Request) {
	vendor, err := m.onboardingVendor(r)
	if err != nil {
		m.writeError(w, r, err)
		return
	}
	data, err := m.readOnboardingBody(r)
	if err != nil {
		m.writeError(w, r, err)
		return
	}
	req, err := decodeOrganisation(data)
	if err != nil {
		m.writeError(w, r, err)
		return
	}
	now := m.svc.Clock.Now().UTC()
	body, err := json.Marshal(req.Fields)
	if err != nil {
		m.writeError(w, r, err)
		return
	}
	org := &store.DoshiiOrganisation{
		ID: secret.NewID(organisationIDPrefix), VendorID: vendor.ID, Name: req.Name, Body: body,
		CreatedAt: now, UpdatedAt: now,
	}
	var loc *store.DoshiiLocation
	var locToken string
	if req.Location != nil {
		req.Location.OrganisationID = org.ID
		loc, locToken, err = buildLocation(vendor, req.Location, now)
		if err != nil {
			m.writeError(w, r, err)
			return
		}
		err = m.svc.Store.CreateDoshiiOrganisationWithLocation(r.Context(), org, loc)
	} else {
		err = m.svc.Store.CreateDoshiiOrganisation(r.Context(), org)
	}
	if errors.Is(err, store.ErrConflict) {
		m.writeError(w, r, errs.New(errs.Conflict, "duplicate", "an organisation with this name already exists for this vendor"))
		return
	}
	if err != nil {
		m.writeError(w, r, storeError(err))
		return
	}
	m.audit(r, vendor, "doshii.organisation.create", org.ID)
	resp := organisationResponse{
		ID: org.ID, VendorID: vendor.ID, Name: org.Name, organisationFields: req.Fields,
		CreatedAt: org.CreatedAt.Format(timeFormat), UpdatedAt: org.UpdatedAt.Format(timeFormat),
	}
	if loc != nil {
		m.audit(r, vendor, "doshii.location.create", loc.ID)
		lr := m.locationResponse(r, loc, req.Location.Fields)
		lr.Token = locToken
		resp.Location = &lr
	}
	httpx.NoStore(w)
	httpx.WriteJSON(w, http.StatusCreated, resp)
}

// createLocation serves POST {prefix}/locations. The organisation must be one of the caller's:
// another vendor's organisation is answered 404 exactly like one that does not exist, so ids of
// other vendors cannot be probed.
func (m *Module) createLocation(w http.ResponseWriter, r *http.Request) {
	vendor, err := m.onboardingVendor(r)
	if err != nil {
		m.writeError(w, r, err)
		return
	}
	data, err := m.readOnboardingBody(r)
	if err != nil {
		m.writeError(w, r, err)
		return
	}
	req, err := decodeLocation(data)
	if err != nil {
		m.writeError(w, r, err)
		return
	}
	org, err := m.svc.Store.GetDoshiiOrganisation(r.Context(), req.OrganisationID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && org.VendorID != vendor.ID) {
		m.writeError(w, r, errs.New(errs.NotFound, "not_found", "organisation not found"))
		return
	}
	if err != nil {
		m.writeError(w, r, storeError(err))
		return
	}
	now := m.svc.Clock.Now().UTC()
	loc, tok, err := buildLocation(vendor, req, now)
	if err != nil {
		m.writeError(w, r, err)
		return
	}
	err = m.svc.Store.CreateDoshiiLocation(r.Context(), loc)
	if errors.Is(err, store.ErrConflict) {
		m.writeError(w, r, errs.New(errs.Conflict, "duplicate", "a location with this name already exists in this organisation"))
		return
	}
	if err != nil {
		m.writeError(w, r, storeError(err))
		return
	}
	m.audit(r, vendor, "doshii.location.create", loc.ID)
	resp := m.locationResponse(r, loc, req.Fields)
	resp.Token = tok
	httpx.NoStore(w)
	w.Header().Set("Location", resp.URI)
	httpx.WriteJSON(w, http.StatusCreated, resp)
}

// buildLocation makes the store record of a new location and its token (returned once, stored
// only as SHA-256).
func buildLocation(vendor *Vendor, l *newLocation, now time.Time) (*store.DoshiiLocation, string, error) {
	body, err := json.Marshal(l.Fields)
	if err != nil {
		return nil, "", err
	}
	tok := secret.Generate(secret.PrefixLocationToken)
	return &store.DoshiiLocation{
		ID: secret.NewID(locationIDPrefix), VendorID: vendor.ID, OrganisationID: l.OrganisationID,
		Name: l.Name, TokenHash: secret.Hash(tok), Body: body, CreatedAt: now, UpdatedAt: now,
	}, tok, nil
}

// getLocation serves GET {prefix}/locations/{id} to a location JWT. A location may read only
// itself: any other id — existing or not — is 403, so nothing about other locations leaks.
func (m *Module) getLocation(w http.ResponseWriter, r *http.Request) {
	venue, err := m.authenticateVenue(r)
	if err != nil {
		m.writeError(w, r, err)
		return
	}
	if err := checkTenant(r, venue.Location.ID); err != nil {
		m.writeError(w, r, err)
		return
	}
	loc, err := m.svc.Store.GetDoshiiLocation(r.Context(), venue.Location.ID)
	if errors.Is(err, store.ErrNotFound) {
		m.writeError(w, r, errs.New(errs.NotFound, "not_found", "location not found"))
		return
	}
	if err != nil {
		m.writeError(w, r, storeError(err))
		return
	}
	var fields locationFields
	if len(loc.Body) > 0 {
		if err := json.Unmarshal(loc.Body, &fields); err != nil {
			m.writeError(w, r, errs.Wrap(errs.Internal, "body", "internal error", err))
			return
		}
	}
	httpx.WriteJSON(w, http.StatusOK, m.locationResponse(r, loc, fields))
}

// checkTenant applies the location binding to this module's own venue routes, as the gateway
// does to forwarded ones: the path's {id} and a doshii-location-id header must name the caller.
func checkTenant(r *http.Request, location string) error {
	forbidden := errs.New(errs.Forbidden, "tenant_mismatch", "this location JWT may only access its own location")
	if id := r.PathValue("id"); id != location {
		return forbidden
	}
	for _, h := range r.Header.Values(LocationHeader) {
		if h != location {
			return forbidden
		}
	}
	return nil
}

func (m *Module) authenticateVenue(r *http.Request) (*Venue, error) {
	name, jwt, err := headerCredentials(r)
	if err != nil {
		return nil, err
	}
	return m.verifier.AuthenticateVenue(r.Context(), auth.Addr(r), name, jwt)
}

func (m *Module) locationResponse(r *http.Request, l *store.DoshiiLocation, f locationFields) locationResponse {
	resp := locationResponse{
		ID: l.ID, OrganisationID: l.OrganisationID, VendorID: l.VendorID, APIVersion: APIVersion,
		Name: l.Name, locationFields: f,
		CreatedAt: l.CreatedAt.UTC().Format(timeFormat), UpdatedAt: l.UpdatedAt.UTC().Format(timeFormat),
		URI: m.baseURL(r) + m.cfg.prefix + "/locations/" + l.ID,
	}
	if d := disconnectedAt(l, m.svc.Clock.Now()); d != nil {
		s := d.UTC().Format(timeFormat)
		resp.DisconnectedDate = &s
	}
	return resp
}

// baseURL is the public origin for `uri` fields: server.issuer (configured, or derived by the
// server when it starts listening — read per request for that reason), else the request's own
// scheme and host.
func (m *Module) baseURL(r *http.Request) string {
	if c := m.svc.Config; c != nil && c.Server.Issuer != "" {
		return strings.TrimRight(c.Server.Issuer, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (m *Module) writeError(w http.ResponseWriter, r *http.Request, err error) {
	writeError(m.svc.Log, w, r, err)
}

func (m *Module) audit(r *http.Request, v *Vendor, action, target string) {
	m.svc.Audit(context.WithoutCancel(r.Context()), store.AuditEvent{
		Actor: "vendor:" + v.ID, Action: action, Target: target, Address: auth.Addr(r), Outcome: "ok",
	})
}

// venueAuthenticator is "doshii.venue" for gateway routes.
type venueAuthenticator struct{ m *Module }

func (a *venueAuthenticator) Authenticate(r *http.Request) (*auth.Principal, error) {
	v, err := a.m.authenticateVenue(r)
	if err != nil {
		return nil, err
	}
	return v.Principal(), nil
}

func (a *venueAuthenticator) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	a.m.writeError(w, r, err)
}

// HasCredential reports, without checking anything, whether r carries a doshii venue credential
// (a Bearer token and the vendor header), so the gateway can answer a doshii credential on a
// route of another means with 403.
func (a *venueAuthenticator) HasCredential(r *http.Request) bool {
	_, _, err := headerCredentials(r)
	return err == nil || !auth.IsNoCredential(err)
}

// disconnectedAt is when l went offline, or nil while it is online: the store keeps the moment
// its last heartbeat stops counting, and a location that never sent one has been disconnected
// since it was created.
func disconnectedAt(l *store.DoshiiLocation, now time.Time) *time.Time {
	switch {
	case l.DisconnectedAt == nil:
		t := l.CreatedAt
		return &t
	case now.Before(*l.DisconnectedAt):
		return nil
	default:
		return l.DisconnectedAt
	}
}
