package sqlstore

import (
	"context"
	"time"

	"github.com/posgate/posgate/internal/store"
)

// One query reads a client and its assertion keys (LEFT JOIN), so the hot path
// GetClientByIDHash is a single indexed round trip.
const clientSelect = `SELECT c.id, c.name, c.client_id_hash, c.client_id_hint, c.secret_hash,
	c.grant_types, c.scopes, c.audiences, c.api_key, c.disabled, c.created_at, c.updated_at,
	c.version, k.id, k.sealed, k.created_at, k.not_after
FROM clients c LEFT JOIN client_assertion_keys k ON k.client_id = c.id`

// CreateClient stores c and its assertion keys (given newest first).
func (s *Store) CreateClient(ctx context.Context, c *store.Client) error {
	return s.inTx(ctx, "create client", func(tx Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO clients (id, name, client_id_hash, client_id_hint, secret_hash,
			grant_types, scopes, audiences, api_key, disabled, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
			c.ID, c.Name, blob(c.ClientIDHash), c.ClientIDHint, blob(c.SecretHash),
			listIn(c.GrantTypes), listIn(c.Scopes), listIn(c.Audiences), c.APIKey, c.Disabled,
			ms(c.CreatedAt), ms(c.UpdatedAt))
		if err != nil {
			return err
		}
		for i := len(c.AssertionKeys) - 1; i >= 0; i-- { // oldest first, so newest gets the highest pos
			k := c.AssertionKeys[i]
			if _, err := tx.Exec(ctx, `INSERT INTO client_assertion_keys (id, client_id, pos, sealed, created_at, not_after)
				VALUES ($1, $2, $3, $4, $5, $6)`,
				k.ID, c.ID, int64(len(c.AssertionKeys)-i), blob(k.Sealed), ms(k.CreatedAt), msPtr(k.NotAfter)); err != nil {
				return err
			}
		}
		return nil
	})
}

// GetClient returns the client with internal id id.
func (s *Store) GetClient(ctx context.Context, id string) (*store.Client, error) {
	return s.oneClient(ctx, "get client", clientSelect+` WHERE c.id = $1 ORDER BY k.pos DESC`, id)
}

// GetClientByIDHash returns the client whose public identifier hashes to h.
func (s *Store) GetClientByIDHash(ctx context.Context, h []byte) (*store.Client, error) {
	return s.oneClient(ctx, "get client by id hash", clientSelect+` WHERE c.client_id_hash = $1 ORDER BY k.pos DESC`, blob(h))
}

func (s *Store) oneClient(ctx context.Context, op, query string, arg any) (*store.Client, error) {
	l, err := s.queryClients(ctx, query, arg)
	return firstOf(s, op, l, err)
}

// ListClients returns every client, oldest first.
func (s *Store) ListClients(ctx context.Context) ([]*store.Client, error) {
	l, err := s.queryClients(ctx, clientSelect+` ORDER BY c.created_at, c.id, k.pos DESC`)
	if err != nil {
		return nil, s.fail("list clients", err)
	}
	return l, nil
}

// queryClients reads joined rows; the rows of one client are adjacent (every query orders by
// client first).
func (s *Store) queryClients(ctx context.Context, query string, args ...any) ([]*store.Client, error) {
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*store.Client
	for rows.Next() {
		var (
			c                    store.Client
			grants, scopes, auds string
			created, updated     int64
			kID                  *string
			kSealed              []byte
			kCreated, kNotAfter  *int64
		)
		if err := rows.Scan(&c.ID, &c.Name, &c.ClientIDHash, &c.ClientIDHint, &c.SecretHash,
			&grants, &scopes, &auds, &c.APIKey, &c.Disabled, &created, &updated,
			&c.Version, &kID, &kSealed, &kCreated, &kNotAfter); err != nil {
			return nil, err
		}
		cur := &c
		if n := len(out); n > 0 && out[n-1].ID == c.ID {
			cur = out[n-1]
		} else {
			c.ClientIDHash, c.SecretHash = blobOut(c.ClientIDHash), blobOut(c.SecretHash)
			c.CreatedAt, c.UpdatedAt = fromMS(created), fromMS(updated)
			if c.GrantTypes, err = listOut(grants); err != nil {
				return nil, err
			}
			if c.Scopes, err = listOut(scopes); err != nil {
				return nil, err
			}
			if c.Audiences, err = listOut(auds); err != nil {
				return nil, err
			}
			out = append(out, cur)
		}
		if kID != nil && kCreated != nil {
			cur.AssertionKeys = append(cur.AssertionKeys, store.AssertionKey{
				ID: *kID, Sealed: blobOut(kSealed), CreatedAt: fromMS(*kCreated), NotAfter: fromMSPtr(kNotAfter),
			})
		}
	}
	return out, rows.Err()
}

// UpdateClient replaces the mutable fields of the client c.ID.
func (s *Store) UpdateClient(ctx context.Context, c *store.Client) error {
	n, err := s.exec(ctx, `UPDATE clients SET name = $2, secret_hash = $3, grant_types = $4, scopes = $5,
		audiences = $6, disabled = $7, updated_at = $8, version = version + 1 WHERE id = $1`,
		c.ID, c.Name, blob(c.SecretHash), listIn(c.GrantTypes), listIn(c.Scopes), listIn(c.Audiences),
		c.Disabled, ms(c.UpdatedAt))
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	return s.fail("update client", err)
}

// SetClientCredentials replaces the client's identifier (hash and hint) and secret hash.
func (s *Store) SetClientCredentials(ctx context.Context, id string, clientIDHash []byte, clientIDHint string, secretHash []byte, at time.Time) error {
	n, err := s.exec(ctx, `UPDATE clients SET client_id_hash = $2, client_id_hint = $3, secret_hash = $4, updated_at = $5,
		version = version + 1 WHERE id = $1`,
		id, blob(clientIDHash), clientIDHint, blob(secretHash), ms(at))
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	return s.fail("set client credentials", err)
}

// AddAssertionKey adds k as the client's newest key and ends the older keys' validity at
// overlapEnd (unless they already end sooner).
func (s *Store) AddAssertionKey(ctx context.Context, clientID string, k store.AssertionKey, overlapEnd time.Time) error {
	return s.inTx(ctx, "add assertion key", func(tx Tx) error {
		pos, err := retireKeysForNew(ctx, tx, "clients", "client_assertion_keys", "client_id", clientID, overlapEnd)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE clients SET version = version + 1 WHERE id = $1`, clientID); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO client_assertion_keys (id, client_id, pos, sealed, created_at, not_after)
			VALUES ($1, $2, $3, $4, $5, $6)`, k.ID, clientID, pos, blob(k.Sealed), ms(k.CreatedAt), msPtr(k.NotAfter))
		return err
	})
}
