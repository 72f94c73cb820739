package doshii

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/posgate/posgate/client/tokensource"
)

// Client makes a vendor's REST calls.
type Client struct {
	// BaseURL is the API's versioned root, e.g. "https://posgate.example/pos/v3".
	BaseURL string
	// Vendor is the vendor's API name (the `vendor` header).
	Vendor string
	Key    *VendorKey
	// HTTPClient sends the requests (http.DefaultClient when nil); its Transport is used
	// underneath the venue Transport.
	HTTPClient *http.Client
	// Skew corrects the clock of location JWTs (see Transport); nil means none.
	Skew *tokensource.Skew
	// Now is the local clock (time.Now).
	Now func() time.Time
}

// Organisation is an organisation as sent and as answered; the answer fills ID, VendorID, the
// times and Location (the inline location created with it, with its token).
type Organisation struct {
	ID            string    `json:"id,omitempty"`
	VendorID      string    `json:"vendorId,omitempty"`
	Name          string    `json:"name"`
	Email         string    `json:"email,omitempty"`
	Phone         string    `json:"phone,omitempty"`
	AddressLine1  string    `json:"addressLine1,omitempty"`
	AddressLine2  string    `json:"addressLine2,omitempty"`
	City          string    `json:"city,omitempty"`
	State         string    `json:"state,omitempty"`
	PostalCode    string    `json:"postalCode,omitempty"`
	Country       string    `json:"country,omitempty"`
	ABN           string    `json:"abn,omitempty"`
	CompanyNumber string    `json:"companyNumber,omitempty"`
	Location      *Location `json:"location,omitempty"`
	CreatedAt     string    `json:"createdAt,omitempty"`
	UpdatedAt     string    `json:"updatedAt,omitempty"`
}

// Location is a venue as sent and as answered. Token, the location token, is in the answer that
// created the location only.
type Location struct {
	ID               string  `json:"id,omitempty"`
	Token            string  `json:"token,omitempty"`
	OrganisationID   string  `json:"organisationId,omitempty"`
	VendorID         string  `json:"vendorId,omitempty"`
	APIVersion       string  `json:"apiVersion,omitempty"`
	Name             string  `json:"name"`
	Classification   string  `json:"classification,omitempty"`
	AddressLine1     string  `json:"addressLine1,omitempty"`
	AddressLine2     string  `json:"addressLine2,omitempty"`
	City             string  `json:"city,omitempty"`
	State            string  `json:"state,omitempty"`
	PostalCode       string  `json:"postalCode,omitempty"`
	Country          string  `json:"country,omitempty"`
	PhoneNumber      string  `json:"phoneNumber,omitempty"`
	Latitude         string  `json:"latitude,omitempty"`
	Longitude        string  `json:"longitude,omitempty"`
	Timezone         string  `json:"timezone,omitempty"`
	DisconnectedDate *string `json:"disconnectedDate,omitempty"`
	CreatedAt        string  `json:"createdAt,omitempty"`
	UpdatedAt        string  `json:"updatedAt,omitempty"`
	URI              string  `json:"uri,omitempty"`
}

// Error is a refusal of the API: the HTTP status and Doshii's message.
type Error struct {
	Status  int
	Message string
	// Retry is the server's Retry-After (429, 503), zero when absent.
	Retry time.Duration
}

func (e *Error) Error() string {
	return fmt.Sprintf("doshii: %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// RetryAfter is the wait the server asked for (tokensource.RetryAfter reads it).
func (e *Error) RetryAfter() time.Duration { return e.Retry }

// CreateOrganisation onboards an organisation, with its first location when o.Location is set
// (both in one transaction on posgate). Authenticated with the vendor key.
func (c *Client) CreateOrganisation(ctx context.Context, o Organisation) (*Organisation, error) {
	var out Organisation
	if err := c.vendorCall(ctx, "/organisations", o, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateLocation onboards a location of an existing organisation (l.OrganisationID).
// Authenticated with the vendor key.
func (c *Client) CreateLocation(ctx context.Context, l Location) (*Location, error) {
	var out Location
	if err := c.vendorCall(ctx, "/locations", l, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetLocation reads a location with a location JWT signed for locationToken.
func (c *Client) GetLocation(ctx context.Context, id, locationToken string) (*Location, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url("/locations/"+url.PathEscape(id)), nil)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: c.VenueTransport(locationToken)}
	if c.HTTPClient != nil {
		hc.Timeout = c.HTTPClient.Timeout
	}
	var out Location
	if err := do(hc, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// VenueTransport returns the Transport of venue calls for locationToken, on the Client's
// HTTPClient's transport.
func (c *Client) VenueTransport(locationToken string) *Transport {
	var base http.RoundTripper
	if c.HTTPClient != nil {
		base = c.HTTPClient.Transport
	}
	return &Transport{Key: c.Key, Vendor: c.Vendor, LocationToken: locationToken, Skew: c.Skew, Now: c.Now, Base: base}
}

func (c *Client) url(path string) string { return strings.TrimSuffix(c.BaseURL, "/") + path }

func (c *Client) vendorCall(ctx context.Context, path string, in, out any) error {
	vk, err := c.Key.get()
	if err != nil {
		return err
	}
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url(path), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+vk.raw)
	req.Header.Set("Vendor", c.Vendor)
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	return do(hc, req, out)
}

// maxAnswer caps an answer of the API (a location is about 1 KiB).
const maxAnswer = 1 << 20

func do(hc *http.Client, req *http.Request, out any) error {
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := &Error{Status: resp.StatusCode, Retry: tokensource.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
		var m struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(data, &m) == nil && m.Message != "" {
			e.Message = m.Message
		} else {
			e.Message = strings.TrimSpace(string(data[:min(len(data), 200)]))
		}
		return e
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("doshii: %s %s: the answer is not JSON: %w", req.Method, req.URL.Path, err)
	}
	return nil
}
