package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
)

func newClient(n int) *store.Client {
	return &store.Client{
		ID:           fmt.Sprintf("cl_%03d", n),
		Name:         fmt.Sprintf("client %d", n),
		ClientIDHash: []byte(fmt.Sprintf("hash-of-client-id-%03d", n)),
		ClientIDHint: fmt.Sprintf("pg_ck_…%03d", n),
		SecretHash:   []byte(fmt.Sprintf("hash-of-secret-%03d", n)),
		GrantTypes:   []string{"client_credentials", "refresh_token"},
		Scopes:       []string{"orders:read", "orders:write"},
		Audiences:    []string{"https://pos.example"},
		CreatedAt:    base.Add(time.Duration(n) * time.Second),
		UpdatedAt:    base.Add(time.Duration(n) * time.Second),
	}
}

func checkClient(t *testing.T, got, want *store.Client) {
	t.Helper()
	eq(t, "ID", got.ID, want.ID)
	eq(t, "Name", got.Name, want.Name)
	eqBytes(t, "ClientIDHash", got.ClientIDHash, want.ClientIDHash)
	eq(t, "ClientIDHint", got.ClientIDHint, want.ClientIDHint)
	eqBytes(t, "SecretHash", got.SecretHash, want.SecretHash)
	eqList(t, "GrantTypes", got.GrantTypes, want.GrantTypes)
	eqList(t, "Scopes", got.Scopes, want.Scopes)
	eqList(t, "Audiences", got.Audiences, want.Audiences)
	eq(t, "APIKey", got.APIKey, want.APIKey)
	eq(t, "Disabled", got.Disabled, want.Disabled)
	eqTime(t, "CreatedAt", got.CreatedAt, want.CreatedAt.Truncate(time.Millisecond))
	eqTime(t, "UpdatedAt", got.UpdatedAt, want.UpdatedAt.Truncate(time.Millisecond))
	if len(got.AssertionKeys) != len(want.AssertionKeys) {
		t.Fatalf("AssertionKeys: %d, want %d", len(got.AssertionKeys), len(want.AssertionKeys))
	}
	for i := range want.AssertionKeys {
		g, w := got.AssertionKeys[i], want.AssertionKeys[i]
		eq(t, "AssertionKeys.ID", g.ID, w.ID)
		eqBytes(t, "AssertionKeys.Sealed", g.Sealed, w.Sealed)
		eqTime(t, "AssertionKeys.CreatedAt", g.CreatedAt, w.CreatedAt.Truncate(time.Millisecond))
		var wantNA *time.Time
		if w.NotAfter != nil {
			wantNA = ptr(w.NotAfter.Truncate(time.Millisecond))
		}
		eqTimePtr(t, "AssertionKeys.NotAfter", g.NotAfter, wantNA)
	}
}

func testClients(t *testing.T, s store.Store) {
	c1, c2, c3 := newClient(1), newClient(2), newClient(3)
	c2.SecretHash = nil // a public client
	c2.APIKey = true
	c2.Scopes, c2.Audiences = nil, nil
	c3.Disabled = true
	// Created out of order: ListClients orders by creation time, not insertion.
	for _, c := range []*store.Client{c3, c1, c2} {
		ok(t, s.CreateClient(ctx(t), c))
	}

	for _, c := range []*store.Client{c1, c2, c3} {
		got, err := s.GetClient(ctx(t), c.ID)
		ok(t, err)
		checkClient(t, got, c)
		got, err = s.GetClientByIDHash(ctx(t), c.ClientIDHash)
		ok(t, err)
		checkClient(t, got, c)
	}

	list, err := s.ListClients(ctx(t))
	ok(t, err)
	if len(list) != 3 {
		t.Fatalf("ListClients: %d clients, want 3", len(list))
	}
	for i, want := range []*store.Client{c1, c2, c3} {
		checkClient(t, list[i], want)
	}

	dupID := newClient(4)
	dupID.ID = c1.ID
	wantErr(t, s.CreateClient(ctx(t), dupID), store.ErrConflict)
	dupHash := newClient(5)
	dupHash.ClientIDHash = c2.ClientIDHash
	wantErr(t, s.CreateClient(ctx(t), dupHash), store.ErrConflict)

	_, err = s.GetClient(ctx(t), "cl_missing")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetClientByIDHash(ctx(t), []byte("no such hash"))
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetClientByIDHash(ctx(t), nil)
	wantErr(t, err, store.ErrNotFound)

	// UpdateClient replaces exactly the documented fields.
	upd := *c1
	upd.Name = "renamed"
	upd.SecretHash = []byte("new secret hash")
	upd.GrantTypes = []string{"password"}
	upd.Scopes = nil
	upd.Audiences = []string{"a", "b"}
	upd.Disabled = true
	upd.UpdatedAt = base.Add(time.Hour)
	upd.ClientIDHint = "ignored"         // not an updatable field
	upd.APIKey = true                    // not an updatable field
	upd.CreatedAt = base.Add(-time.Hour) // not an updatable field
	ok(t, s.UpdateClient(ctx(t), &upd))
	got, err := s.GetClient(ctx(t), c1.ID)
	ok(t, err)
	want := upd
	want.ClientIDHint, want.APIKey, want.CreatedAt = c1.ClientIDHint, c1.APIKey, c1.CreatedAt
	checkClient(t, got, &want)

	missing := newClient(9)
	wantErr(t, s.UpdateClient(ctx(t), missing), store.ErrNotFound)

	// SetClientCredentials re-issues the identifier and the secret: the client is found by the
	// new hash only, and another client's hash is a conflict.
	at := base.Add(2 * time.Hour)
	ok(t, s.SetClientCredentials(ctx(t), c1.ID, []byte("new id hash"), "pg_ck_…new", []byte("newer secret hash"), at))
	got, err = s.GetClientByIDHash(ctx(t), []byte("new id hash"))
	ok(t, err)
	want.ClientIDHash, want.ClientIDHint, want.SecretHash, want.UpdatedAt = []byte("new id hash"), "pg_ck_…new", []byte("newer secret hash"), at
	checkClient(t, got, &want)
	_, err = s.GetClientByIDHash(ctx(t), c1.ClientIDHash)
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, s.SetClientCredentials(ctx(t), c1.ID, c2.ClientIDHash, "x", nil, at), store.ErrConflict)
	wantErr(t, s.SetClientCredentials(ctx(t), missing.ID, []byte("free hash"), "x", nil, at), store.ErrNotFound)
}

func testClientAssertionKeys(t *testing.T, s store.Store) {
	c := newClient(1)
	c.APIKey = true
	c.AssertionKeys = []store.AssertionKey{ // newest first
		{ID: "ak_b", Sealed: []byte("sealed b"), CreatedAt: base.Add(2 * time.Minute)},
		{ID: "ak_a", Sealed: []byte("sealed a"), CreatedAt: base.Add(time.Minute), NotAfter: ptr(base.Add(time.Hour))},
	}
	ok(t, s.CreateClient(ctx(t), c))
	got, err := s.GetClient(ctx(t), c.ID)
	ok(t, err)
	checkClient(t, got, c)

	// A new key: older keys without an end, or ending later than the overlap, end at the overlap;
	// keys already ending sooner keep their end.
	overlap := base.Add(30 * time.Minute)
	k := store.AssertionKey{ID: "ak_c", Sealed: []byte("sealed c"), CreatedAt: base.Add(3 * time.Minute)}
	ok(t, s.AddAssertionKey(ctx(t), c.ID, k, overlap))
	c.AssertionKeys = []store.AssertionKey{k,
		{ID: "ak_b", Sealed: []byte("sealed b"), CreatedAt: base.Add(2 * time.Minute), NotAfter: ptr(overlap)},
		{ID: "ak_a", Sealed: []byte("sealed a"), CreatedAt: base.Add(time.Minute), NotAfter: ptr(overlap)},
	}
	got, err = s.GetClientByIDHash(ctx(t), c.ClientIDHash)
	ok(t, err)
	checkClient(t, got, c)

	later := base.Add(2 * time.Hour)
	k2 := store.AssertionKey{ID: "ak_d", Sealed: []byte("sealed d"), CreatedAt: base.Add(4 * time.Minute)}
	ok(t, s.AddAssertionKey(ctx(t), c.ID, k2, later))
	c.AssertionKeys = append([]store.AssertionKey{k2}, c.AssertionKeys...)
	c.AssertionKeys[1].NotAfter = ptr(later) // ak_c had none
	list, err := s.ListClients(ctx(t))
	ok(t, err)
	if len(list) != 1 {
		t.Fatalf("ListClients: %d, want 1", len(list))
	}
	checkClient(t, list[0], c)

	wantErr(t, s.AddAssertionKey(ctx(t), "cl_missing", store.AssertionKey{ID: "ak_x", Sealed: []byte("x"), CreatedAt: base}, later), store.ErrNotFound)
	wantErr(t, s.AddAssertionKey(ctx(t), c.ID, store.AssertionKey{ID: "ak_d", Sealed: []byte("x"), CreatedAt: base}, later), store.ErrConflict)
	// The failed addition changed nothing (it ran in one transaction).
	got, err = s.GetClient(ctx(t), c.ID)
	ok(t, err)
	checkClient(t, got, c)
}
