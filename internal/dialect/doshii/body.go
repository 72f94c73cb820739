package doshii

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // timezone names are validated against the embedded IANA database, not the host's
	"unicode"
	"unicode/utf8"

	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/jsonx"
)

// organisationRequest is the body of POST {prefix}/organisations. Pointers tell "absent or null"
// from "empty".
type organisationRequest struct {
	Name          *string          `json:"name"`
	Email         *string          `json:"email"`
	Phone         *string          `json:"phone"`
	AddressLine1  *string          `json:"addressLine1"`
	AddressLine2  *string          `json:"addressLine2"`
	City          *string          `json:"city"`
	State         *string          `json:"state"`
	PostalCode    *string          `json:"postalCode"`
	Country       *string          `json:"country"`
	ABN           *string          `json:"abn"`
	CompanyNumber *string          `json:"companyNumber"`
	Location      *locationRequest `json:"location"`
}

// locationRequest is the body of POST {prefix}/locations, or the inline `location` of an
// organisation. Doshii documents latitude and longitude as strings; clients send numbers too, so
// both are accepted (RawMessage) and checked here.
type locationRequest struct {
	Name           *string         `json:"name"`
	OrganisationID *string         `json:"organisationId"`
	Classification *string         `json:"classification"`
	AddressLine1   *string         `json:"addressLine1"`
	AddressLine2   *string         `json:"addressLine2"`
	City           *string         `json:"city"`
	State          *string         `json:"state"`
	PostalCode     *string         `json:"postalCode"`
	Country        *string         `json:"country"`
	PhoneNumber    *string         `json:"phoneNumber"`
	Latitude       json.RawMessage `json:"latitude"`
	Longitude      json.RawMessage `json:"longitude"`
	Timezone       *string         `json:"timezone"`
}

// organisationFields are an organisation's validated descriptive fields, stored as its Body.
type organisationFields struct {
	Email         string `json:"email,omitempty"`
	Phone         string `json:"phone,omitempty"`
	AddressLine1  string `json:"addressLine1,omitempty"`
	AddressLine2  string `json:"addressLine2,omitempty"`
	City          string `json:"city,omitempty"`
	State         string `json:"state,omitempty"`
	PostalCode    string `json:"postalCode,omitempty"`
	Country       string `json:"country,omitempty"`
	ABN           string `json:"abn,omitempty"`
	CompanyNumber string `json:"companyNumber,omitempty"`
}

// locationFields are a location's validated descriptive fields, stored as its Body.
type locationFields struct {
	Classification string `json:"classification,omitempty"`
	AddressLine1   string `json:"addressLine1,omitempty"`
	AddressLine2   string `json:"addressLine2,omitempty"`
	City           string `json:"city,omitempty"`
	State          string `json:"state,omitempty"`
	PostalCode     string `json:"postalCode,omitempty"`
	Country        string `json:"country,omitempty"`
	PhoneNumber    string `json:"phoneNumber,omitempty"`
	Latitude       string `json:"latitude,omitempty"`
	Longitude      string `json:"longitude,omitempty"`
	Timezone       string `json:"timezone,omitempty"`
}

// newOrganisation is a validated organisation body.
type newOrganisation struct {
	Name     string
	Fields   organisationFields
	Location *newLocation // the inline location, if any
}

// newLocation is a validated location body.
type newLocation struct {
	Name           string
	OrganisationID string // "" for an inline location
	Fields         locationFields
}

// Field limits (characters). Generous for real addresses, small enough to keep rows and
// identity headers bounded.
const (
	maxName       = 200
	maxAddress    = 200
	maxCity       = 100
	maxState      = 100
	maxPostalCode = 16
	maxPhone      = 32
	maxEmail      = 254 // RFC 5321 path limit
	maxCompanyNo  = 64
	maxTimezone   = 64
	maxID         = 64
)

// classifications are Doshii's documented location classifications. Matching is
// case-insensitive; the stored value is the canonical spelling.
var classifications = []string{
	"Accommodation", "Amateur Sport", "Bakery", "Bar", "Café", "Cinema", "Club", "Education",
	"Golf Club", "Gym", "Pub", "QSR", "Restaurant", "Takeaway Food",
}

// jsonNumber is the JSON number grammar (RFC 8259 §6), for coordinates sent as strings.
var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// decodeOrganisation parses and validates an organisation body. Every failure is a BadInput
// *errs.Error whose message names the field and what is allowed, never echoing the value.
func decodeOrganisation(data []byte) (*newOrganisation, error) {
	var req organisationRequest
	if err := decodeStrict(data, &req); err != nil {
		return nil, err
	}
	v := &validator{}
	o := &newOrganisation{
		Name: v.text("name", req.Name, maxName, true),
		Fields: organisationFields{
			Email:         v.email("email", req.Email),
			Phone:         v.phone("phone", req.Phone),
			AddressLine1:  v.text("addressLine1", req.AddressLine1, maxAddress, false),
			AddressLine2:  v.text("addressLine2", req.AddressLine2, maxAddress, false),
			City:          v.text("city", req.City, maxCity, false),
			State:         v.text("state", req.State, maxState, false),
			PostalCode:    v.postalCode("postalCode", req.PostalCode),
			Country:       v.country("country", req.Country),
			ABN:           v.abn("abn", req.ABN),
			CompanyNumber: v.text("companyNumber", req.CompanyNumber, maxCompanyNo, false),
		},
	}
	if v.err != nil {
		return nil, v.err
	}
	if req.Location != nil {
		if req.Location.OrganisationID != nil {
			return nil, fieldError("location.organisationId", "must not be set in an inline location (it is the organisation being created)")
		}
		l, err := validateLocation(req.Location, "location.", false)
		if err != nil {
			return nil, err
		}
		o.Location = l
	}
	return o, nil
}

// decodeLocation parses and validates a location body (organisationId required).
func decodeLocation(data []byte) (*newLocation, error) {
	var req locationRequest
	if err := decodeStrict(data, &req); err != nil {
		return nil, err
	}
	return validateLocation(&req, "", true)
}

func validateLocation(req *locationRequest, path string, needOrg bool) (*newLocation, error) {
	v := &validator{path: path}
	l := &newLocation{
		Name: v.text("name", req.Name, maxName, true),
		Fields: locationFields{
			Classification: v.classification("classification", req.Classification),
			AddressLine1:   v.text("addressLine1", req.AddressLine1, maxAddress, false),
			AddressLine2:   v.text("addressLine2", req.AddressLine2, maxAddress, false),
			City:           v.text("city", req.City, maxCity, false),
			State:          v.text("state", req.State, maxState, false),
			PostalCode:     v.postalCode("postalCode", req.PostalCode),
			Country:        v.country("country", req.Country),
			PhoneNumber:    v.phone("phoneNumber", req.PhoneNumber),
			Latitude:       v.coordinate("latitude", req.Latitude, 90),
			Longitude:      v.coordinate("longitude", req.Longitude, 180),
			Timezone:       v.timezone("timezone", req.Timezone),
		},
	}
	if needOrg {
		l.OrganisationID = v.id("organisationId", req.OrganisationID)
	}
	if v.err != nil {
		return nil, v.err
	}
	return l, nil
}

// decodeStrict decodes a JSON object body: valid UTF-8 (encoding/json would silently replace bad
// bytes), no duplicate keys (compared case-insensitively), no unknown fields — a misspelt field
// must not be dropped silently. Type errors name the field.
func decodeStrict(data []byte, v any) error {
	if !utf8.Valid(data) {
		return badInput("invalid_body", "request body is not valid UTF-8")
	}
	err := jsonx.Decode(data, v, true)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te) && te.Field != "":
		want := "a string"
		switch te.Type.String() {
		case "doshii.locationRequest", "*doshii.locationRequest":
			want = "an object"
		}
		return fieldError(te.Field, "must be "+want)
	case errors.As(err, &te):
		return badInput("invalid_body", "request body must be a JSON object")
	case errors.Is(err, jsonx.ErrDuplicateKey):
		return errs.Wrap(errs.BadInput, "invalid_body", "request body repeats a key", err)
	case errors.Is(err, jsonx.ErrNotObject):
		return badInput("invalid_body", "request body must be a JSON object")
	}
	msg := err.Error()
	if i := strings.Index(msg, "json: unknown field "); i >= 0 {
		// The field name comes from the caller; quote it safely and bound it.
		name := strings.Trim(msg[i+len("json: unknown field "):], `"`)
		if len(name) > 64 || !utf8.ValidString(name) {
			name = name[:0]
		}
		return errs.Wrap(errs.BadInput, "invalid_body", "unknown field "+strconv.Quote(name), err)
	}
	return errs.Wrap(errs.BadInput, "invalid_body", "request body is not valid JSON", err)
}

func fieldError(field, what string) error {
	return badInput("invalid_field", field+" "+what)
}

// validator collects the first field error.
type validator struct {
	path string // prefix of field names ("location." for an inline location)
	err  error
}

func (v *validator) fail(field, what string) {
	if v.err == nil {
		v.err = fieldError(v.path+field, what)
	}
}

// text checks a free-text field: at most max characters, no control characters, and when
// required present and not blank.
func (v *validator) text(field string, p *string, max int, required bool) string {
	if p == nil {
		if required {
			v.fail(field, "is required")
		}
		return ""
	}
	s := *p
	if required && strings.TrimSpace(s) == "" {
		v.fail(field, "must not be blank")
		return ""
	}
	if utf8.RuneCountInString(s) > max {
		v.fail(field, fmt.Sprintf("must be at most %d characters", max))
		return ""
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			v.fail(field, "must not contain control characters")
			return ""
		}
	}
	return s
}

func (v *validator) email(field string, p *string) string {
	s := v.text(field, p, maxEmail, false)
	if s == "" {
		return ""
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" {
		v.fail(field, "must be a plain e-mail address (name@example.com)")
		return ""
	}
	return s
}

// phone: digits with optional spaces, '+', '-', '.', '(' and ')'; 3 to 20 digits.
func (v *validator) phone(field string, p *string) string {
	s := v.text(field, p, maxPhone, false)
	if s == "" {
		return ""
	}
	digits := 0
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case strings.ContainsRune(" +-.()", r):
		default:
			v.fail(field, "must be a phone number (digits, spaces, + - . ( ) only)")
			return ""
		}
	}
	if digits < 3 || digits > 20 {
		v.fail(field, "must hold 3 to 20 digits")
		return ""
	}
	return s
}

// postalCode: letters, digits, spaces and '-' (AU 3000, UK SW1A 1AA, US 12345-6789).
func (v *validator) postalCode(field string, p *string) string {
	s := v.text(field, p, maxPostalCode, false)
	for _, r := range s {
		if !(r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == ' ' || r == '-')) {
			v.fail(field, "must hold only letters, digits, spaces and '-'")
			return ""
		}
	}
	return s
}

// country: an ISO 3166-1 alpha-2 code, two ASCII letters; stored in upper case.
func (v *validator) country(field string, p *string) string {
	if p == nil {
		return ""
	}
	s := *p
	if len(s) != 2 || !isASCIILetter(s[0]) || !isASCIILetter(s[1]) {
		v.fail(field, "must be a 2-letter country code (ISO 3166-1 alpha-2, e.g. AU)")
		return ""
	}
	return strings.ToUpper(s)
}

func isASCIILetter(c byte) bool { return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') }

// abn: an Australian Business Number, 11 digits (spaces allowed between groups), stored as the
// 11 digits. The checksum is not enforced: test and sandbox data often use made-up numbers.
func (v *validator) abn(field string, p *string) string {
	s := v.text(field, p, 20, false)
	if s == "" {
		return ""
	}
	d := strings.ReplaceAll(s, " ", "")
	if len(d) != 11 || strings.Trim(d, "0123456789") != "" {
		v.fail(field, "must be an ABN of 11 digits")
		return ""
	}
	return d
}

func (v *validator) classification(field string, p *string) string {
	if p == nil {
		return ""
	}
	for _, c := range classifications {
		if strings.EqualFold(*p, c) {
			return c
		}
	}
	v.fail(field, "must be one of: "+strings.Join(classifications, ", "))
	return ""
}

// coordinate: a JSON number, or a string holding one (Doshii documents strings), within
// ±limit degrees. Stored as the decimal text that was sent.
func (v *validator) coordinate(field string, raw json.RawMessage, limit float64) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	text := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &text); err != nil {
			v.fail(field, "must be a number")
			return ""
		}
	}
	if len(text) > 32 || !jsonNumber.MatchString(text) {
		v.fail(field, fmt.Sprintf("must be a number between %g and %g", -limit, limit))
		return ""
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || f < -limit || f > limit {
		v.fail(field, fmt.Sprintf("must be a number between %g and %g", -limit, limit))
		return ""
	}
	return text
}

// timezone: an IANA zone name that the embedded database knows ("Australia/Melbourne", "UTC").
func (v *validator) timezone(field string, p *string) string {
	if p == nil {
		return ""
	}
	s := *p
	bad := s == "" || s == "Local" || len(s) > maxTimezone
	if !bad {
		for _, r := range s {
			if !(r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("/_-+", r))) {
				bad = true
				break
			}
		}
	}
	if !bad {
		_, err := time.LoadLocation(s)
		bad = err != nil
	}
	if bad {
		v.fail(field, "must be an IANA time zone name (e.g. Australia/Melbourne)")
		return ""
	}
	return s
}

// id: an opaque id as posgate issues them (letters, digits, '_').
func (v *validator) id(field string, p *string) string {
	if p == nil || *p == "" {
		v.fail(field, "is required")
		return ""
	}
	s := *p
	if len(s) > maxID || strings.TrimFunc(s, func(r rune) bool {
		return r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '-')
	}) != "" {
		v.fail(field, "is not a valid id")
		return ""
	}
	return s
}
