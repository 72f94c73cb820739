package keys

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/store"
)

// keyStores are the store.SigningKeys implementations the keyring tests run against. A factory
// makes one empty database and returns a function that opens a connection to it, one per
// "replica" (the in-memory fake hands out the same instance; SQLite opens the file again).
var keyStores = map[string]func(t *testing.T) func() store.SigningKeys{
	"mem": func(*testing.T) func() store.SigningKeys {
		m := &memKeys{}
		return func() store.SigningKeys { return m }
	},
}

// forEachStore runs f against every backend; st is the first replica's store, replica opens more.
func forEachStore(t *testing.T, f func(t *testing.T, st store.SigningKeys, replica func() store.SigningKeys)) {
	for name, open := range keyStores {
		t.Run(name, func(t *testing.T) {
			replica := open(t)
			f(t, replica(), replica)
		})
	}
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const testMaxLifetime = 2 * time.Hour

func testKeyring(t testing.TB, st store.SigningKeys, clk clock.Clock, alg string, rotateEvery time.Duration) *Keyring {
	t.Helper()
	return NewKeyring(st, newTestSealer(t, 1), clk, alg, rotateEvery, testMaxLifetime)
}

func mustLoad(t testing.TB, kr *Keyring) {
	t.Helper()
	if err := kr.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func states(kr *Keyring) map[string]string {
	m := map[string]string{}
	for _, ki := range kr.List() {
		m[ki.KID] = ki.State
	}
	return m
}

func stateCount(kr *Keyring) map[string]int {
	c := map[string]int{}
	for _, s := range states(kr) {
		c[s]++
	}
	return c
}

type jwkSet struct {
	Keys []map[string]string `json:"keys"`
}

func parseJWKS(t *testing.T, b []byte) jwkSet {
	t.Helper()
	var s jwkSet
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("JWKS %s: %v", b, err)
	}
	return s
}

// jwkToPublic rebuilds a public key from its JWK members alone, as a relying party would.
func jwkToPublic(t *testing.T, j map[string]string) any {
	t.Helper()
	dec := func(s string) []byte {
		b, err := base64.RawURLEncoding.Strict().DecodeString(s)
		if err != nil {
			t.Fatalf("JWK member %q: %v", s, err)
		}
		return b
	}
	switch j["kty"] {
	case "OKP":
		if j["crv"] != "Ed25519" {
			t.Fatalf("OKP crv %q", j["crv"])
		}
		return ed25519.PublicKey(dec(j["x"]))
	case "EC":
		if j["crv"] != "P-256" {
			t.Fatalf("EC crv %q", j["crv"])
		}
		raw := append(append([]byte{4}, dec(j["x"])...), dec(j["y"])...)
		k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
		if err != nil {
			t.Fatal(err)
		}
		return k
	case "RSA":
		return &rsa.PublicKey{N: new(big.Int).SetBytes(dec(j["n"])), E: int(new(big.Int).SetBytes(dec(j["e"])).Int64())}
	}
	t.Fatalf("unexpected kty %q", j["kty"])
	return nil
}

func TestKeyringLoadCreatesActiveAndNext(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.SigningKeys, replica func() store.SigningKeys) {
		clk := clock.NewFake(t0)
		kr := testKeyring(t, st, clk, AlgEdDSA, 0)
		if _, err := kr.Active(); err != ErrNotLoaded {
			t.Fatalf("Active before Load: %v", err)
		}
		if got := string(kr.JWKS()); got != `{"keys":[]}` {
			t.Fatalf("JWKS before Load: %s", got)
		}
		mustLoad(t, kr)
		list := kr.List()
		if len(list) != 2 || list[0].State != "active" || list[1].State != "next" {
			t.Fatalf("List = %+v, want active then next", list)
		}
		for _, ki := range list {
			if ki.Alg != AlgEdDSA || !ki.CreatedAt.Equal(t0) || ki.RetiredAt != nil || ki.ExpiresAt != nil {
				t.Fatalf("key info %+v", ki)
			}
		}
		if list[0].ActivatedAt == nil || !list[0].ActivatedAt.Equal(t0) {
			t.Fatalf("active key's activation time %v, want %v", list[0].ActivatedAt, t0)
		}
		// A second Load (a restart) creates nothing.
		kr2 := testKeyring(t, replica(), clk, AlgEdDSA, 0)
		mustLoad(t, kr2)
		a1, _ := kr.Active()
		a2, _ := kr2.Active()
		if a1.KID != a2.KID || len(kr2.List()) != 2 {
			t.Fatalf("restart changed the keyring: %v vs %v", kr.List(), kr2.List())
		}
		all, _ := st.ListSigningKeys(context.Background())
		if len(all) != 2 {
			t.Fatalf("store holds %d keys, want 2", len(all))
		}
		// Private keys are sealed, bound to their kid.
		for _, sk := range all {
			if _, err := x509.ParsePKCS8PrivateKey(sk.Private); err == nil {
				t.Fatal("a private key is stored in clear")
			}
			s := newTestSealer(t, 1)
			if _, err := s.Open(sk.Private, []byte("signing-key:"+sk.KID)); err != nil {
				t.Fatalf("private key of %s does not open with its kid: %v", sk.KID, err)
			}
			if _, err := s.Open(sk.Private, []byte(sk.KID)); err == nil {
				t.Fatal("private key opens without the signing-key purpose")
			}
		}
	})
}

func TestKeyringAlgorithms(t *testing.T) {
	for _, c := range []struct {
		alg, kty string
		sigLen   int
	}{{AlgEdDSA, "OKP", 64}, {AlgES256, "EC", 64}, {AlgRS256, "RSA", 256}} {
		t.Run(c.alg, func(t *testing.T) {
			forEachStore(t, func(t *testing.T, st store.SigningKeys, replica func() store.SigningKeys) {
				kr := testKeyring(t, st, clock.NewFake(t0), c.alg, 0)
				mustLoad(t, kr)
				signer, err := kr.Active()
				if err != nil || signer.Alg != c.alg {
					t.Fatalf("Active = %+v, %v", signer, err)
				}
				msg := []byte("header.payload")
				sig, err := signer.Sign(msg)
				if err != nil || len(sig) != c.sigLen {
					t.Fatalf("Sign: %d bytes, %v", len(sig), err)
				}
				pk, ok := kr.Lookup(signer.KID)
				if !ok || pk.Alg != c.alg || !pk.Verify(msg, sig) {
					t.Fatalf("Lookup(%s) = %+v, %v; signature does not verify", signer.KID, pk, ok)
				}
				bad := append([]byte{}, sig...)
				bad[len(bad)-1] ^= 1
				if pk.Verify(msg, bad) || pk.Verify([]byte("header.payloaD"), sig) || pk.Verify(msg, sig[:len(sig)-1]) {
					t.Fatal("a wrong signature verifies")
				}
				set := parseJWKS(t, kr.JWKS())
				if len(set.Keys) != 2 {
					t.Fatalf("JWKS has %d keys, want 2", len(set.Keys))
				}
				for _, j := range set.Keys {
					if j["kty"] != c.kty || j["alg"] != c.alg || j["use"] != "sig" || j["kid"] == "" {
						t.Fatalf("JWK %v", j)
					}
					for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
						if _, ok := j[private]; ok {
							t.Fatalf("JWK %v publishes private member %q", j, private)
						}
					}
				}
				// A relying party rebuilding the key from the JWKS verifies our signature.
				if set.Keys[0]["kid"] != signer.KID {
					t.Fatalf("first JWK is %s, want the active key %s", set.Keys[0]["kid"], signer.KID)
				}
				other := &PublicKey{Alg: c.alg, key: jwkToPublic(t, set.Keys[0])}
				if !other.Verify(msg, sig) {
					t.Fatal("signature does not verify with the key rebuilt from the JWKS")
				}
				if rk, ok := other.key.(*rsa.PublicKey); ok && rk.N.BitLen() < 2048 {
					t.Fatalf("RSA key of %d bits", rk.N.BitLen())
				}
			})
		})
	}
}

// RFC 7638 §3.1 gives the thumbprint of its example RSA key.
func TestThumbprintRFC7638(t *testing.T) {
	n := "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
	nb, _ := base64.RawURLEncoding.DecodeString(n)
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(nb), E: 65537}
	got, err := thumbprint(pub)
	if err != nil || got != "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" {
		t.Fatalf("thumbprint = %q, %v", got, err)
	}
}

func TestKeyringRefusesBadConfiguration(t *testing.T) {
	for _, alg := range []string{"", "HS256", "none", "eddsa", "PS256"} {
		kr := NewKeyring(&memKeys{}, newTestSealer(t, 1), clock.NewFake(t0), alg, 0, time.Hour)
		if err := kr.Load(context.Background()); err == nil || !strings.Contains(err.Error(), "unsupported algorithm") {
			t.Errorf("alg %q: err = %v", alg, err)
		}
	}
	kr := NewKeyring(&memKeys{}, newTestSealer(t, 1), clock.NewFake(t0), AlgEdDSA, 0, 0)
	if err := kr.Load(context.Background()); err == nil {
		t.Error("a zero maximum token lifetime was accepted")
	}
}

func TestKeyringRotation(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.SigningKeys, replica func() store.SigningKeys) {
		ctx := context.Background()
		clk := clock.NewFake(t0)
		kr := testKeyring(t, st, clk, AlgEdDSA, 0)
		mustLoad(t, kr)
		old, _ := kr.Active()
		nextKID := kr.List()[1].KID
		msg := []byte("signed before the rotation")
		sig, _ := old.Sign(msg)

		clk.Advance(time.Minute)
		if err := kr.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		cur, _ := kr.Active()
		if cur.KID != nextKID {
			t.Fatalf("after rotation the active key is %s, want the former next key %s", cur.KID, nextKID)
		}
		st1 := states(kr)
		if st1[old.KID] != "retired" || st1[nextKID] != "active" || stateCount(kr)["next"] != 1 || len(st1) != 3 {
			t.Fatalf("after rotation: %v", st1)
		}
		list := kr.List()
		retired := list[2]
		wantExpiry := t0.Add(time.Minute + testMaxLifetime + RetireGrace)
		if retired.KID != old.KID || !retired.RetiredAt.Equal(t0.Add(time.Minute)) || !retired.ExpiresAt.Equal(wantExpiry) {
			t.Fatalf("retired key %+v, want retired at %v, expiring %v", retired, t0.Add(time.Minute), wantExpiry)
		}
		if !list[0].ActivatedAt.Equal(t0.Add(time.Minute)) {
			t.Fatalf("new active key's activation %v", list[0].ActivatedAt)
		}
		// Tokens signed by the retired key still verify, and it is still published.
		pk, ok := kr.Lookup(old.KID)
		if !ok || pk.State != store.KeyRetired || !pk.Verify(msg, sig) {
			t.Fatal("the retired key no longer verifies its signatures")
		}
		if n := len(parseJWKS(t, kr.JWKS()).Keys); n != 3 {
			t.Fatalf("JWKS has %d keys after rotation, want 3", n)
		}

		// Until just before its expiry it is accepted; from then on it is dropped everywhere.
		clk.Set(wantExpiry.Add(-time.Second))
		if _, ok := kr.Lookup(old.KID); !ok {
			t.Fatal("retired key dropped before its expiry")
		}
		clk.Set(wantExpiry)
		if _, ok := kr.Lookup(old.KID); ok {
			t.Fatal("retired key still accepted at its expiry")
		}
		set := parseJWKS(t, kr.JWKS())
		if len(set.Keys) != 2 || strings.Contains(string(kr.JWKS()), old.KID) {
			t.Fatalf("JWKS still publishes the expired key: %v", set)
		}
		if _, ok := states(kr)[old.KID]; ok {
			t.Fatal("List still shows the expired key")
		}
		clk.Advance(time.Second)
		if _, err := kr.MaybeRotate(ctx); err != nil {
			t.Fatal(err)
		}
		all, _ := st.ListSigningKeys(ctx)
		for _, sk := range all {
			if sk.KID == old.KID {
				t.Fatal("the expired key was not deleted from the store")
			}
		}
	})
}

func TestKeyringMaybeRotateSchedule(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.SigningKeys, replica func() store.SigningKeys) {
		ctx := context.Background()
		clk := clock.NewFake(t0)
		kr := testKeyring(t, st, clk, AlgEdDSA, 24*time.Hour)
		mustLoad(t, kr)
		first, _ := kr.Active()
		clk.Advance(24*time.Hour - time.Second)
		if rotated, err := kr.MaybeRotate(ctx); err != nil || rotated {
			t.Fatalf("rotated early: %v %v", rotated, err)
		}
		clk.Advance(time.Second)
		if rotated, err := kr.MaybeRotate(ctx); err != nil || !rotated {
			t.Fatalf("not rotated on schedule: %v %v", rotated, err)
		}
		second, _ := kr.Active()
		if second.KID == first.KID {
			t.Fatal("active key unchanged")
		}
		// The schedule restarts from the rotation, not from when the new active key was made.
		clk.Advance(time.Hour)
		if rotated, err := kr.MaybeRotate(ctx); err != nil || rotated {
			t.Fatalf("rotated again an hour later: %v %v", rotated, err)
		}
		clk.Advance(23 * time.Hour)
		if rotated, err := kr.MaybeRotate(ctx); err != nil || !rotated {
			t.Fatalf("second scheduled rotation missing: %v %v", rotated, err)
		}
		// rotateEvery 0: manual only.
		manual := testKeyring(t, st, clk, AlgEdDSA, 0)
		mustLoad(t, manual)
		clk.Advance(1000 * time.Hour)
		if rotated, err := manual.MaybeRotate(ctx); err != nil || rotated {
			t.Fatalf("manual-only keyring rotated: %v %v", rotated, err)
		}
	})
}

// Replicas starting at once on an empty store agree on one active and one next key.
func TestKeyringConcurrentLoadConverges(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.SigningKeys, replica func() store.SigningKeys) {
		clk := clock.NewFake(t0)
		const n = 6
		rings := make([]*Keyring, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			rings[i] = testKeyring(t, replica(), clk, AlgEdDSA, 0)
			wg.Go(func() { errs[i] = rings[i].Load(context.Background()) })
		}
		wg.Wait()
		a0, _ := rings[0].Active()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("replica %d: %v", i, errs[i])
			}
			a, _ := rings[i].Active()
			if a.KID != a0.KID {
				t.Fatalf("replica %d signs with %s, replica 0 with %s", i, a.KID, a0.KID)
			}
		}
		all, _ := st.ListSigningKeys(context.Background())
		count := map[store.KeyState]int{}
		for _, sk := range all {
			count[sk.State]++
		}
		if count[store.KeyActive] != 1 || count[store.KeyNext] != 1 || len(all) != 2 {
			t.Fatalf("store holds %v", count)
		}
	})
}

// Two replicas rotating at once make one rotation, and both end up on its result.
func TestKeyringConcurrentRotate(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.SigningKeys, replica func() store.SigningKeys) {
		clk := clock.NewFake(t0)
		a, b := testKeyring(t, st, clk, AlgEdDSA, 0), testKeyring(t, replica(), clk, AlgEdDSA, 0)
		mustLoad(t, a)
		mustLoad(t, b)
		var wg sync.WaitGroup
		var ea, eb error
		wg.Go(func() { ea = a.Rotate(context.Background()) })
		wg.Go(func() { eb = b.Rotate(context.Background()) })
		wg.Wait()
		if ea != nil || eb != nil {
			t.Fatalf("rotate: %v / %v", ea, eb)
		}
		all, _ := st.ListSigningKeys(context.Background())
		count := map[store.KeyState]int{}
		for _, sk := range all {
			count[sk.State]++
		}
		// Either one rotation happened (the other saw ErrConflict), or they ran one after the other
		// (two rotations); never a broken keyring.
		if count[store.KeyActive] != 1 || count[store.KeyNext] != 1 || count[store.KeyRetired] < 1 || count[store.KeyRetired] > 2 {
			t.Fatalf("store holds %v", count)
		}
		if err := a.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := b.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		sa, _ := a.Active()
		sb, _ := b.Active()
		if sa.KID != sb.KID {
			t.Fatalf("replicas disagree after refresh: %s vs %s", sa.KID, sb.KID)
		}
	})
}

// Another replica's rotation is seen after Refresh; until then the stale replica signs with the
// old key, whose tokens the rotated replica still verifies.
func TestKeyringRefreshSeesOtherReplica(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.SigningKeys, replica func() store.SigningKeys) {
		clk := clock.NewFake(t0)
		a, b := testKeyring(t, st, clk, AlgEdDSA, 0), testKeyring(t, replica(), clk, AlgEdDSA, 0)
		mustLoad(t, a)
		mustLoad(t, b)
		if err := a.Rotate(context.Background()); err != nil {
			t.Fatal(err)
		}
		stale, _ := b.Active()
		msg := []byte("minted by the stale replica")
		sig, _ := stale.Sign(msg)
		if pk, ok := a.Lookup(stale.KID); !ok || !pk.Verify(msg, sig) {
			t.Fatal("rotated replica refuses the stale replica's token")
		}
		cur, _ := a.Active()
		if pk, ok := b.Lookup(cur.KID); !ok || pk.State != store.KeyNext {
			t.Fatal("stale replica does not know the new active key (it was published as next)")
		}
		if err := b.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		if s, _ := b.Active(); s.KID != cur.KID {
			t.Fatalf("after Refresh replica b signs with %s, want %s", s.KID, cur.KID)
		}
	})
}

func TestKeyringWrongMasterKey(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.SigningKeys, replica func() store.SigningKeys) {
		mustLoad(t, testKeyring(t, st, clock.NewFake(t0), AlgEdDSA, 0))
		other := NewKeyring(st, newTestSealer(t, 2), clock.NewFake(t0), AlgEdDSA, 0, testMaxLifetime)
		err := other.Load(context.Background())
		if err == nil || !strings.Contains(err.Error(), "master key") {
			t.Fatalf("err = %v, want a message about the master key", err)
		}
	})
}

// A row whose public key is not the key its kid names is refused (a tampered or damaged store).
func TestKeyringRefusesTamperedKey(t *testing.T) {
	st := &memKeys{}
	mustLoad(t, testKeyring(t, st, clock.NewFake(t0), AlgEdDSA, 0))
	st.keys[1].Public, st.keys[0].Public = st.keys[0].Public, st.keys[1].Public
	err := testKeyring(t, st, clock.NewFake(t0), AlgEdDSA, 0).Load(context.Background())
	if err == nil || !strings.Contains(err.Error(), "thumbprint") {
		t.Fatalf("err = %v", err)
	}
	st2 := &memKeys{}
	mustLoad(t, testKeyring(t, st2, clock.NewFake(t0), AlgEdDSA, 0))
	st2.keys[0].Alg = AlgES256 // an Ed25519 key relabelled: must not be used under another alg
	err = testKeyring(t, st2, clock.NewFake(t0), AlgEdDSA, 0).Load(context.Background())
	if err == nil || !strings.Contains(err.Error(), "does not match algorithm") {
		t.Fatalf("err = %v", err)
	}
}

// With the store down, a refresh fails and the keyring keeps signing and verifying with what it has.
func TestKeyringStoreDown(t *testing.T) {
	st := &memKeys{}
	clk := clock.NewFake(t0)
	kr := testKeyring(t, st, clk, AlgEdDSA, time.Hour)
	mustLoad(t, kr)
	before, _ := kr.Active()
	st.setDown(true)
	if err := kr.Refresh(context.Background()); err == nil {
		t.Fatal("Refresh with the store down succeeded")
	}
	clk.Advance(2 * time.Hour)
	if _, err := kr.MaybeRotate(context.Background()); err == nil {
		t.Fatal("MaybeRotate with the store down succeeded")
	}
	after, err := kr.Active()
	if err != nil || after.KID != before.KID {
		t.Fatalf("active key lost: %v %v", after, err)
	}
	if _, ok := kr.Lookup(before.KID); !ok {
		t.Fatal("verification key lost")
	}
	st.setDown(false)
	if rotated, err := kr.MaybeRotate(context.Background()); err != nil || !rotated {
		t.Fatalf("no recovery: %v %v", rotated, err)
	}
}

// Readers never block on or race with writers (run with -race).
func TestKeyringConcurrentReadersDuringRotation(t *testing.T) {
	st := &memKeys{}
	clk := clock.NewFake(t0)
	kr := testKeyring(t, st, clk, AlgEdDSA, 0)
	mustLoad(t, kr)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				s, err := kr.Active()
				if err != nil {
					t.Error(err)
					return
				}
				sig, _ := s.Sign([]byte("m"))
				if pk, ok := kr.Lookup(s.KID); !ok || !pk.Verify([]byte("m"), sig) {
					t.Error("active key not verifiable")
					return
				}
				_ = kr.JWKS()
				_ = kr.List()
			}
		})
	}
	for range 10 {
		if err := kr.Rotate(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}

func TestKeyInfoJSON(t *testing.T) {
	kr := testKeyring(t, &memKeys{}, clock.NewFake(t0), AlgEdDSA, 0)
	mustLoad(t, kr)
	b, _ := json.Marshal(kr.List())
	s := string(b)
	for _, want := range []string{`"kid":`, `"alg":"EdDSA"`, `"state":"active"`, `"state":"next"`, `"created_at":"2026-03-01T12:00:00Z"`} {
		if !strings.Contains(s, want) {
			t.Errorf("List JSON %s lacks %s", s, want)
		}
	}
	for _, bad := range []string{"private", "Private", `"d":`} {
		if strings.Contains(s, bad) {
			t.Errorf("List JSON %s contains %s", s, bad)
		}
	}
}
