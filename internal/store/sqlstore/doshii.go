package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/posgate/posgate/internal/store"
)

const vendorSelect = `SELECT v.id, v.api_name, v.created_at, v.disabled, k.id, k.sealed, k.hash, k.created_at, k.not_after
FROM doshii_vendors v LEFT JOIN doshii_vendor_keys k ON k.vendor_id = v.id`

// CreateDoshiiVendor stores v and its keys (given newest first). ErrConflict on a duplicate id
// or API name.
func (s *Store) CreateDoshiiVendor(ctx context.Context, v *store.DoshiiVendor) error {
	return s.inTx(ctx, "create doshii vendor", func(tx Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO doshii_vendors (id, api_name, created_at, disabled) VALUES ($1, $2, $3, $4)`,
			v.ID, v.APIName, ms(v.CreatedAt), v.Disabled); err != nil {
			return err
		}
		for i := len(v.Keys) - 1; i >= 0; i-- {
			if err := insertVendorKey(ctx, tx, v.ID, int64(len(v.Keys)-i), v.Keys[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

func insertVendorKey(ctx context.Context, tx Tx, vendorID string, pos int64, k store.VendorKey) error {
	_, err := tx.Exec(ctx, `INSERT INTO doshii_vendor_keys (id, vendor_id, pos, sealed, hash, created_at, not_after)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, k.ID, vendorID, pos, blob(k.Sealed), blob(k.Hash), ms(k.CreatedAt), msPtr(k.NotAfter))
	return err
}

// GetDoshiiVendor returns the vendor id with its keys, newest first.
func (s *Store) GetDoshiiVendor(ctx context.Context, id string) (*store.DoshiiVendor, error) {
	return s.oneVendor(ctx, "get doshii vendor", vendorSelect+` WHERE v.id = $1 ORDER BY k.pos DESC`, id)
}

// GetDoshiiVendorByName returns the vendor with that API name.
func (s *Store) GetDoshiiVendorByName(ctx context.Context, apiName string) (*store.DoshiiVendor, error) {
	return s.oneVendor(ctx, "get doshii vendor by name", vendorSelect+` WHERE v.api_name = $1 ORDER BY k.pos DESC`, apiName)
}

// ListDoshiiVendors returns every vendor, oldest first.
func (s *Store) ListDoshiiVendors(ctx context.Context) ([]*store.DoshiiVendor, error) {
	l, err := s.queryVendors(ctx, vendorSelect+` ORDER BY v.created_at, v.id, k.pos DESC`)
	return l, s.fail("list doshii vendors", err)
}

func (s *Store) oneVendor(ctx context.Context, op, query string, arg any) (*store.DoshiiVendor, error) {
	l, err := s.queryVendors(ctx, query, arg)
	return firstOf(s, op, l, err)
}

func (s *Store) queryVendors(ctx context.Context, query string, args ...any) ([]*store.DoshiiVendor, error) {
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*store.DoshiiVendor
	for rows.Next() {
		var (
			v                   store.DoshiiVendor
			created             int64
			kID                 *string
			kSealed, kHash      []byte
			kCreated, kNotAfter *int64
		)
		if err := rows.Scan(&v.ID, &v.APIName, &created, &v.Disabled, &kID, &kSealed, &kHash, &kCreated, &kNotAfter); err != nil {
			return nil, err
		}
		cur := &v
		if n := len(out); n > 0 && out[n-1].ID == v.ID {
			cur = out[n-1]
		} else {
			v.CreatedAt = fromMS(created)
			out = append(out, cur)
		}
		if kID != nil && kCreated != nil {
			cur.Keys = append(cur.Keys, store.VendorKey{ID: *kID, Sealed: blobOut(kSealed), Hash: blobOut(kHash),
				CreatedAt: fromMS(*kCreated), NotAfter: fromMSPtr(kNotAfter)})
		}
	}
	return out, rows.Err()
}

// AddVendorKey adds k as the vendor's newest key and ends older keys' validity at overlapEnd
// (unless they already end sooner), in one transaction.
func (s *Store) AddVendorKey(ctx context.Context, vendorID string, k store.VendorKey, overlapEnd time.Time) error {
	return s.inTx(ctx, "add vendor key", func(tx Tx) error {
		pos, err := retireKeysForNew(ctx, tx, "doshii_vendors", "doshii_vendor_keys", "vendor_id", vendorID, overlapEnd)
		if err != nil {
			return err
		}
		return insertVendorKey(ctx, tx, vendorID, pos, k)
	})
}

// CreateDoshiiOrganisation stores o. ErrConflict on a duplicate id or (vendor, name); ErrNotFound
// when the vendor does not exist.
func (s *Store) CreateDoshiiOrganisation(ctx context.Context, o *store.DoshiiOrganisation) error {
	return s.inTx(ctx, "create doshii organisation", func(tx Tx) error { return insertOrganisation(ctx, tx, o) })
}

func insertOrganisation(ctx context.Context, tx Tx, o *store.DoshiiOrganisation) error {
	_, err := tx.Exec(ctx, `INSERT INTO doshii_organisations (id, vendor_id, name, body, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, o.ID, o.VendorID, o.Name, blob(o.Body), ms(o.CreatedAt), ms(o.UpdatedAt))
	return err
}

// GetDoshiiOrganisation returns the organisation id.
func (s *Store) GetDoshiiOrganisation(ctx context.Context, id string) (*store.DoshiiOrganisation, error) {
	r, err := s.reader()
	if err != nil {
		return nil, s.fail("get doshii organisation", err)
	}
	var o store.DoshiiOrganisation
	var created, updated int64
	err = r.QueryRow(ctx, `SELECT id, vendor_id, name, body, created_at, updated_at FROM doshii_organisations
		WHERE id = $1`, id).Scan(&o.ID, &o.VendorID, &o.Name, &o.Body, &created, &updated)
	if err != nil {
		return nil, s.fail("get doshii organisation", err)
	}
	o.Body, o.CreatedAt, o.UpdatedAt = blobOut(o.Body), fromMS(created), fromMS(updated)
	return &o, nil
}

// CreateDoshiiLocation stores l. ErrConflict on a duplicate id, token hash or (organisation,
// name); ErrNotFound when no organisation l.OrganisationID of vendor l.VendorID exists.
func (s *Store) CreateDoshiiLocation(ctx context.Context, l *store.DoshiiLocation) error {
	return s.inTx(ctx, "create doshii location", func(tx Tx) error { return insertLocation(ctx, tx, l) })
}

func insertLocation(ctx context.Context, tx Tx, l *store.DoshiiLocation) error {
	_, err := tx.Exec(ctx, `INSERT INTO doshii_locations (id, vendor_id, organisation_id, name, token_hash, body,
		created_at, updated_at, disconnected_at, disabled) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		l.ID, l.VendorID, l.OrganisationID, l.Name, blob(l.TokenHash), blob(l.Body), ms(l.CreatedAt), ms(l.UpdatedAt),
		msPtr(l.DisconnectedAt), l.Disabled)
	return err
}

// CreateDoshiiOrganisationWithLocation stores both or neither.
func (s *Store) CreateDoshiiOrganisationWithLocation(ctx context.Context, o *store.DoshiiOrganisation, l *store.DoshiiLocation) error {
	return s.inTx(ctx, "create doshii organisation with location", func(tx Tx) error {
		if err := insertOrganisation(ctx, tx, o); err != nil {
			return err
		}
		return insertLocation(ctx, tx, l)
	})
}

const locationSelect = `SELECT id, vendor_id, organisation_id, name, token_hash, body, created_at, updated_at,
	disconnected_at, disabled FROM doshii_locations`

// GetDoshiiLocation returns the location id.
func (s *Store) GetDoshiiLocation(ctx context.Context, id string) (*store.DoshiiLocation, error) {
	return s.oneLocation(ctx, "get doshii location", locationSelect+` WHERE id = $1`, id)
}

// GetDoshiiLocationByTokenHash returns the location whose token hashes to h (a unique index read).
func (s *Store) GetDoshiiLocationByTokenHash(ctx context.Context, h []byte) (*store.DoshiiLocation, error) {
	return s.oneLocation(ctx, "get doshii location by token", locationSelect+` WHERE token_hash = $1`, blob(h))
}

func (s *Store) oneLocation(ctx context.Context, op, query string, arg any) (*store.DoshiiLocation, error) {
	r, err := s.reader()
	if err != nil {
		return nil, s.fail(op, err)
	}
	l, err := scanLocation(r.QueryRow(ctx, query, arg))
	if err != nil {
		return nil, s.fail(op, err)
	}
	return l, nil
}

func scanLocation(row interface{ Scan(...any) error }) (*store.DoshiiLocation, error) {
	var l store.DoshiiLocation
	var created, updated int64
	var disconnected *int64
	err := row.Scan(&l.ID, &l.VendorID, &l.OrganisationID, &l.Name, &l.TokenHash, &l.Body,
		&created, &updated, &disconnected, &l.Disabled)
	if err != nil {
		return nil, err
	}
	l.TokenHash, l.Body = blobOut(l.TokenHash), blobOut(l.Body)
	l.CreatedAt, l.UpdatedAt, l.DisconnectedAt = fromMS(created), fromMS(updated), fromMSPtr(disconnected)
	return &l, nil
}

// SetDoshiiLocationToken replaces the location's token hash. ErrConflict if another location has it.
func (s *Store) SetDoshiiLocationToken(ctx context.Context, id string, tokenHash []byte, at time.Time) error {
	n, err := s.exec(ctx, `UPDATE doshii_locations SET token_hash = $2, updated_at = $3 WHERE id = $1`, id, blob(tokenHash), ms(at))
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	return s.fail("set doshii location token", err)
}

// ListDoshiiLocations returns vendorID's locations ("" = all), oldest first.
func (s *Store) ListDoshiiLocations(ctx context.Context, vendorID string) ([]*store.DoshiiLocation, error) {
	const op = "list doshii locations"
	r, err := s.reader()
	if err != nil {
		return nil, s.fail(op, err)
	}
	rows, err := r.Query(ctx, locationSelect+` WHERE $1 = '' OR vendor_id = $1 ORDER BY created_at, id`, vendorID)
	if err != nil {
		return nil, s.fail(op, err)
	}
	defer rows.Close()
	var out []*store.DoshiiLocation
	for rows.Next() {
		l, err := scanLocation(rows)
		if err != nil {
			return nil, s.fail(op, err)
		}
		out = append(out, l)
	}
	return out, s.fail(op, rows.Err())
}

// SetDoshiiVendorDisabled sets the vendor's disabled flag.
func (s *Store) SetDoshiiVendorDisabled(ctx context.Context, id string, disabled bool) error {
	n, err := s.exec(ctx, `UPDATE doshii_vendors SET disabled = $2 WHERE id = $1`, id, disabled)
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	return s.fail("set doshii vendor disabled", err)
}

// SetDoshiiLocationDisabled sets the location's disabled flag.
func (s *Store) SetDoshiiLocationDisabled(ctx context.Context, id string, disabled bool, at time.Time) error {
	n, err := s.exec(ctx, `UPDATE doshii_locations SET disabled = $2, updated_at = $3 WHERE id = $1`, id, disabled, ms(at))
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	return s.fail("set doshii location disabled", err)
}

// ExtendDoshiiLocationOnline moves disconnected_at forward to offlineAt; an earlier offlineAt
// leaves the row as it is.
func (s *Store) ExtendDoshiiLocationOnline(ctx context.Context, id string, offlineAt time.Time) error {
	const op = "extend doshii location online"
	n, err := s.exec(ctx, `UPDATE doshii_locations SET disconnected_at = $2
		WHERE id = $1 AND (disconnected_at IS NULL OR disconnected_at < $2)`, id, ms(offlineAt))
	if err != nil || n == 1 {
		return s.fail(op, err)
	}
	if _, err := s.GetDoshiiLocation(ctx, id); err != nil {
		return s.fail(op, err)
	}
	return nil
}

// ExtendDoshiiVendorOnline moves disconnected_at forward on every enabled location of vendorID.
func (s *Store) ExtendDoshiiVendorOnline(ctx context.Context, vendorID string, offlineAt time.Time) error {
	_, err := s.exec(ctx, `UPDATE doshii_locations SET disconnected_at = $2
		WHERE vendor_id = $1 AND NOT disabled AND (disconnected_at IS NULL OR disconnected_at < $2)`, vendorID, ms(offlineAt))
	return s.fail("extend doshii vendor online", err)
}

// ExtendDoshiiOnline moves disconnected_at forward on many locations in one statement: the ones
// named in locations, and the enabled locations of the vendors in vendors (the later of the two
// deadlines when a location is in both).
func (s *Store) ExtendDoshiiOnline(ctx context.Context, locations, vendors map[string]time.Time) error {
	const op = "extend doshii online"
	if len(locations) == 0 && len(vendors) == 0 {
		return nil
	}
	locs, err := deadlines(locations)
	if err != nil {
		return s.fail(op, err)
	}
	vends, err := deadlines(vendors)
	if err != nil {
		return s.fail(op, err)
	}
	_, err = s.exec(ctx, `UPDATE doshii_locations AS l SET disconnected_at = v.t
		FROM (SELECT id, MAX(t) AS t FROM (
				SELECT k AS id, t FROM (`+s.jsonDeadlines("$1")+`) AS a
				UNION ALL
				SELECT d.id, b.t FROM doshii_locations AS d JOIN (`+s.jsonDeadlines("$2")+`) AS b
					ON d.vendor_id = b.k WHERE NOT d.disabled
			) AS u GROUP BY id) AS v
		WHERE l.id = v.id AND (l.disconnected_at IS NULL OR l.disconnected_at < v.t)`, locs, vends)
	return s.fail(op, err)
}

// deadlines encodes id → time as the JSON object {"<id>": <unix ms>} jsonDeadlines reads.
func deadlines(m map[string]time.Time) (string, error) {
	o := make(map[string]int64, len(m))
	for id, t := range m {
		o[id] = ms(t)
	}
	b, err := json.Marshal(o)
	return string(b), err
}

// jsonDeadlines is a subquery of rows (k, t) from the JSON object {"<id>": <unix ms>} in the
// argument placeholder: one statement text whatever the number of ids.
func (s *Store) jsonDeadlines(placeholder string) string {
	if s.dialect == PostgreSQL {
		return `SELECT key AS k, value::bigint AS t FROM jsonb_each_text(` + placeholder + `::jsonb)`
	}
	return `SELECT key AS k, value AS t FROM json_each(` + placeholder + `)`
}

// The outbox queues of doshii sockets (the dialect's names; deletion clears them).
func doshiiLocationQueue(id string) string { return "doshii:" + id }
func doshiiVendorQueue(id string) string   { return "doshii-vendor:" + id }

// deleteLocationOutbox deletes the outbox messages for location id of vendorID in tx. The
// vendor queue's ids are "<location id>/<event id>", compared by prefix with substr (not LIKE:
// ids contain '_').
func deleteLocationOutbox(ctx context.Context, tx Tx, id, vendorID string) error {
	if _, err := tx.Exec(ctx, `DELETE FROM outbox WHERE queue = $1`, doshiiLocationQueue(id)); err != nil {
		return err
	}
	prefix := id + "/"
	_, err := tx.Exec(ctx, `DELETE FROM outbox WHERE queue = $1 AND substr(id, 1, $2) = $3`,
		doshiiVendorQueue(vendorID), int64(len(prefix)), prefix)
	return err
}

// DeleteDoshiiLocation deletes the location and its outbox messages in one transaction.
func (s *Store) DeleteDoshiiLocation(ctx context.Context, id string) error {
	const op = "delete doshii location"
	return s.inTx(ctx, op, func(tx Tx) error {
		var vendorID string
		if err := tx.QueryRow(ctx, `SELECT vendor_id FROM doshii_locations WHERE id = $1`, id).Scan(&vendorID); err != nil {
			if errors.Is(err, ErrNoRows) {
				return store.ErrNotFound
			}
			return err
		}
		if err := deleteLocationOutbox(ctx, tx, id, vendorID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM doshii_locations WHERE id = $1`, id)
		return err
	})
}

// DeleteDoshiiVendor deletes the vendor, everything it owns and their outbox messages in one
// transaction (children first: the schema's cascades would do it, but explicit deletes do not
// depend on them).
func (s *Store) DeleteDoshiiVendor(ctx context.Context, id string) error {
	const op = "delete doshii vendor"
	return s.inTx(ctx, op, func(tx Tx) error {
		var one int64
		if err := tx.QueryRow(ctx, `SELECT 1 FROM doshii_vendors WHERE id = $1`, id).Scan(&one); err != nil {
			if errors.Is(err, ErrNoRows) {
				return store.ErrNotFound
			}
			return err
		}
		rows, err := tx.Query(ctx, `SELECT id FROM doshii_locations WHERE vendor_id = $1`, id)
		if err != nil {
			return err
		}
		var locs []string
		for rows.Next() {
			var l string
			if err := rows.Scan(&l); err != nil {
				rows.Close()
				return err
			}
			locs = append(locs, l)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, l := range locs {
			if _, err := tx.Exec(ctx, `DELETE FROM outbox WHERE queue = $1`, doshiiLocationQueue(l)); err != nil {
				return err
			}
		}
		for _, q := range []string{
			`DELETE FROM outbox WHERE queue = $1`,
			`DELETE FROM doshii_locations WHERE vendor_id = $1`,
			`DELETE FROM doshii_organisations WHERE vendor_id = $1`,
			`DELETE FROM doshii_vendor_keys WHERE vendor_id = $1`,
			`DELETE FROM doshii_vendors WHERE id = $1`,
		} {
			arg := id
			if strings.HasPrefix(q, "DELETE FROM outbox") {
				arg = doshiiVendorQueue(id)
			}
			if _, err := tx.Exec(ctx, q, arg); err != nil {
				return err
			}
		}
		return nil
	})
}
