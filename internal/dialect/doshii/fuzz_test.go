package doshii

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

var (
	fuzzKey    = []byte("pg_vk_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG")
	fuzzNow    = time.Unix(1_700_000_000, 0)
	fuzzWindow = Window{Past: 600 * time.Second, Future: 60 * time.Second}
)

// FuzzVenueJWT drives the location-JWT verifier. With sign set, header and payload are encoded
// and correctly signed with the vendor key, so the fuzzer reaches the alg and claim checks;
// without it, header is the whole token as received. Whatever is accepted must be HS256 with a
// valid signature, a non-empty location token and a timestamp inside the window.
func FuzzVenueJWT(f *testing.F) {
	ts := strconv.FormatInt(fuzzNow.Unix(), 10)
	for _, s := range []struct {
		header, payload string
		sign            bool
	}{
		{`{"alg":"HS256","typ":"JWT"}`, `{"locationToken":"pg_lt_x","timestamp":` + ts + `}`, true},
		{`{"alg":"HS256"}`, `{"locationToken":"pg_lt_x","timestamp":` + ts + `.0}`, true},
		{`{"alg":"HS256"}`, `{"locationToken":"pg_lt_x","timestamp":1.7e9}`, true},
		{`{"alg":"HS256"}`, `{"locationToken":"pg_lt_x","timestamp":"` + ts + `"}`, true},
		{`{"alg":"HS256"}`, `{"locationToken":"a","locationToken":"b","timestamp":` + ts + `}`, true},
		{`{"alg":"none"}`, `{"locationToken":"pg_lt_x","timestamp":` + ts + `}`, true},
		{`{"alg":"HS512"}`, `{"locationToken":"pg_lt_x","timestamp":` + ts + `}`, true},
		{`{"alg":"HS256","alg":"none"}`, `{}`, true},
		{`{"alg":"HS256"}`, `{"locationToken":"pg_lt_x","timestamp":-1e308}`, true},
		{`{"alg":"HS256"}`, `[]`, true},
		{locationJWT(string(fuzzKey), "pg_lt_x", ts), "", false},
		{"eyJhbGciOiJub25lIn0.eyJ9.", "", false},
		{"a.b.c", "", false},
		{"...", "", false},
		{"", "", false},
	} {
		f.Add(s.header, s.payload, s.sign)
	}
	f.Fuzz(func(t *testing.T, header, payload string, sign bool) {
		raw := header
		if sign {
			raw = signRaw(header, payload, fuzzKey)
		}
		c, err := VerifyLocationJWT(raw, [][]byte{fuzzKey}, fuzzNow, fuzzWindow)
		if err != nil {
			if c != nil {
				t.Fatal("claims returned with an error")
			}
			_ = verifyErrorMessage(err)
			return
		}
		parts := strings.Split(raw, ".")
		if len(parts) != 3 {
			t.Fatalf("accepted a token of %d segments", len(parts))
		}
		hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
		sig, err2 := base64.RawURLEncoding.DecodeString(parts[2])
		if err1 != nil || err2 != nil {
			t.Fatal("accepted a token with bad base64")
		}
		var h map[string]any
		if json.Unmarshal(hb, &h) != nil || h["alg"] != "HS256" {
			t.Fatalf("accepted header %q", hb)
		}
		mac := hmac.New(sha256.New, fuzzKey)
		mac.Write([]byte(parts[0] + "." + parts[1]))
		if !hmac.Equal(mac.Sum(nil), sig) {
			t.Fatal("accepted a wrong signature")
		}
		if c.LocationToken == "" || len(c.LocationToken) > maxLocationToken {
			t.Fatalf("accepted location token %q", c.LocationToken)
		}
		if c.Timestamp.Before(fuzzNow.Add(-fuzzWindow.Past-time.Microsecond)) || c.Timestamp.After(fuzzNow.Add(fuzzWindow.Future+time.Microsecond)) {
			t.Fatalf("accepted timestamp %v outside the window", c.Timestamp)
		}
	})
}

// FuzzOnboardingBody drives the organisation and location body decoders. Whatever is accepted
// must satisfy every documented field rule and store as JSON that decodes back the same.
func FuzzOnboardingBody(f *testing.F) {
	for _, s := range []string{
		`{"name":"Acme","country":"AU","abn":"51 824 753 556","email":"a@b.example","location":{"name":"Bar","timezone":"Australia/Melbourne","latitude":"-37.8","longitude":144.9,"classification":"café"}}`,
		`{"name":"Venue","organisationId":"do_abc","phoneNumber":"+61 3 9000 0000","postalCode":"SW1A 1AA","latitude":90,"longitude":-180}`,
		`{"name":"a","name":"b"}`,
		`{"name":"a","Name":"b"}`,
		`{"name":"a","location":{"name":"l","organisationId":"x"}}`,
		`{"name":"a","location":"x"}`,
		`{"name":"a","latitude":"1e2"}`,
		`{"name":"a","timezone":"../../etc/passwd"}`,
		`{"name":"\u0000"}`,
		`{"name":12}`,
		`[]`,
		`{`,
		"{\"name\":\"\xff\"}",
	} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, org bool) {
		if org {
			o, err := decodeOrganisation(data)
			if err != nil {
				if o != nil {
					t.Fatal("value with an error")
				}
				return
			}
			checkText(t, "name", o.Name, maxName, true)
			checkCountry(t, o.Fields.Country)
			if o.Fields.ABN != "" && (len(o.Fields.ABN) != 11 || strings.Trim(o.Fields.ABN, "0123456789") != "") {
				t.Fatalf("abn %q", o.Fields.ABN)
			}
			roundTrip(t, o.Fields)
			if o.Location != nil {
				checkLocation(t, o.Location)
			}
			return
		}
		l, err := decodeLocation(data)
		if err != nil {
			return
		}
		if l.OrganisationID == "" {
			t.Fatal("accepted a location without organisationId")
		}
		checkLocation(t, l)
	})
}

func checkLocation(t *testing.T, l *newLocation) {
	t.Helper()
	checkText(t, "name", l.Name, maxName, true)
	checkCountry(t, l.Fields.Country)
	for _, c := range []struct {
		v     string
		limit float64
	}{{l.Fields.Latitude, 90}, {l.Fields.Longitude, 180}} {
		if c.v == "" {
			continue
		}
		f, err := strconv.ParseFloat(c.v, 64)
		if err != nil || f < -c.limit || f > c.limit {
			t.Fatalf("coordinate %q accepted", c.v)
		}
	}
	if tz := l.Fields.Timezone; tz != "" {
		if _, err := time.LoadLocation(tz); err != nil || tz == "Local" {
			t.Fatalf("timezone %q accepted", tz)
		}
	}
	roundTrip(t, l.Fields)
}

func checkText(t *testing.T, field, s string, max int, required bool) {
	t.Helper()
	if required && strings.TrimSpace(s) == "" {
		t.Fatalf("%s blank accepted", field)
	}
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > max || strings.IndexFunc(s, unicode.IsControl) >= 0 {
		t.Fatalf("%s %q accepted", field, s)
	}
}

func checkCountry(t *testing.T, c string) {
	t.Helper()
	if c != "" && (len(c) != 2 || strings.ToUpper(c) != c || !isASCIILetter(c[0]) || !isASCIILetter(c[1])) {
		t.Fatalf("country %q accepted", c)
	}
}

// roundTrip checks the stored form decodes back to the same fields.
func roundTrip[T any](t *testing.T, v T) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var back T
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	again, _ := json.Marshal(back)
	if !bytes.Equal(data, again) {
		t.Fatalf("stored body does not round-trip: %s vs %s", data, again)
	}
}
