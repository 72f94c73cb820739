package sqlstore

import (
	"context"
	"errors"
	"time"

	"github.com/posgate/posgate/internal/store"
)

const deviceCols = `id, device_key, label, address, address_key, user_agent, state, first_seen, updated_at, decided_at, decided_by, generation`

func scanDevice(sc func(...any) error) (*store.ChefDevice, error) {
	var d store.ChefDevice
	var state string
	var first, updated, gen int64
	var decided *int64
	if err := sc(&d.ID, &d.DeviceKey, &d.Label, &d.Address, &d.AddressKey, &d.UserAgent, &state, &first, &updated, &decided, &d.DecidedBy, &gen); err != nil {
		return nil, err
	}
	d.State = store.DeviceState(state)
	d.FirstSeen, d.UpdatedAt, d.DecidedAt = fromMS(first), fromMS(updated), fromMSPtr(decided)
	d.Generation = int(gen)
	return &d, nil
}

// UpsertPendingChefDevice creates d as pending with generation 1, or moves the device with the
// same DeviceKey to pending with d's label, address and User-Agent, generation+1 and no decision
// (keeping its id and FirstSeen). One statement, so concurrent requests cannot lose a bump.
// UpdatedAt defaults to FirstSeen and FirstSeen to UpdatedAt when one is zero; AddressKey to
// Address when empty.
func (s *Store) UpsertPendingChefDevice(ctx context.Context, d *store.ChefDevice) (*store.ChefDevice, error) {
	w, err := s.writer()
	if err != nil {
		return nil, s.fail("upsert pending chef device", err)
	}
	at, first := d.UpdatedAt, d.FirstSeen
	if at.IsZero() {
		at = first
	}
	if first.IsZero() {
		first = at
	}
	addrKey := d.AddressKey
	if addrKey == "" {
		addrKey = d.Address
	}
	out, err := scanDevice(w.QueryRow(ctx, `INSERT INTO chef_devices (id, device_key, label, address, address_key, user_agent, state,
		first_seen, updated_at, decided_at, decided_by, generation) VALUES ($1, $2, $3, $4, $8, $5, 'pending', $6, $7, NULL, '', 1)
		ON CONFLICT (device_key) DO UPDATE SET label = excluded.label, address = excluded.address,
			address_key = excluded.address_key, user_agent = excluded.user_agent, state = 'pending',
			updated_at = excluded.updated_at, decided_at = NULL, decided_by = '', generation = chef_devices.generation + 1
		RETURNING `+deviceCols, d.ID, d.DeviceKey, d.Label, d.Address, d.UserAgent, ms(first), ms(at), addrKey).Scan)
	return out, s.fail("upsert pending chef device", err)
}

// GetChefDevice returns the device id.
func (s *Store) GetChefDevice(ctx context.Context, id string) (*store.ChefDevice, error) {
	return s.oneDevice(ctx, "get chef device", `SELECT `+deviceCols+` FROM chef_devices WHERE id = $1`, id)
}

// GetChefDeviceByKey returns the device with that device key.
func (s *Store) GetChefDeviceByKey(ctx context.Context, deviceKey string) (*store.ChefDevice, error) {
	return s.oneDevice(ctx, "get chef device by key", `SELECT `+deviceCols+` FROM chef_devices WHERE device_key = $1`, deviceKey)
}

func (s *Store) oneDevice(ctx context.Context, op, query string, arg any) (*store.ChefDevice, error) {
	r, err := s.reader()
	if err != nil {
		return nil, s.fail(op, err)
	}
	d, err := scanDevice(r.QueryRow(ctx, query, arg).Scan)
	return d, s.fail(op, err)
}

// ListChefDevices returns the devices in state (all when ""), oldest first.
func (s *Store) ListChefDevices(ctx context.Context, state store.DeviceState) ([]*store.ChefDevice, error) {
	r, err := s.reader()
	if err != nil {
		return nil, s.fail("list chef devices", err)
	}
	q, args := `SELECT `+deviceCols+` FROM chef_devices ORDER BY first_seen, id`, []any{}
	if state != "" {
		q, args = `SELECT `+deviceCols+` FROM chef_devices WHERE state = $1 ORDER BY first_seen, id`, []any{string(state)}
	}
	rows, err := r.Query(ctx, q, args...)
	if err != nil {
		return nil, s.fail("list chef devices", err)
	}
	defer rows.Close()
	var out []*store.ChefDevice
	for rows.Next() {
		d, err := scanDevice(rows.Scan)
		if err != nil {
			return nil, s.fail("list chef devices", err)
		}
		out = append(out, d)
	}
	return out, s.fail("list chef devices", rows.Err())
}

// CountChefDevices counts the devices in state (all when "").
func (s *Store) CountChefDevices(ctx context.Context, state store.DeviceState) (int, error) {
	r, err := s.reader()
	if err != nil {
		return 0, s.fail("count chef devices", err)
	}
	var n int64
	if state == "" {
		err = r.QueryRow(ctx, `SELECT COUNT(*) FROM chef_devices`).Scan(&n)
	} else {
		err = r.QueryRow(ctx, `SELECT COUNT(*) FROM chef_devices WHERE state = $1`, string(state)).Scan(&n)
	}
	return int(n), s.fail("count chef devices", err)
}

// DecideChefDevice moves the device from one of `from` to `to` with one conditional UPDATE; of
// concurrent deciders exactly one wins and the others get ErrConflict.
func (s *Store) DecideChefDevice(ctx context.Context, id string, from []store.DeviceState, to store.DeviceState, by string, at time.Time) (*store.ChefDevice, error) {
	var out *store.ChefDevice
	err := s.inTx(ctx, "decide chef device", func(tx Tx) error {
		if len(from) > 0 {
			args := []any{id, string(to), by, ms(at)}
			for _, f := range from {
				args = append(args, string(f))
			}
			d, err := scanDevice(tx.QueryRow(ctx, `UPDATE chef_devices SET state = $2, decided_by = $3, decided_at = $4,
				updated_at = $4 WHERE id = $1 AND state IN (`+placeholders(5, len(from))+`) RETURNING `+deviceCols, args...).Scan)
			if err == nil {
				out = d
				return nil
			}
			if !errors.Is(err, ErrNoRows) {
				return err
			}
		}
		var one int64
		if err := tx.QueryRow(ctx, `SELECT 1 FROM chef_devices WHERE id = $1`, id).Scan(&one); err != nil {
			return err
		}
		return store.ErrConflict
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CountPendingChefDevicesSince counts the pending devices updated after since, and those of them
// with addressKey, in one query. The (state, updated_at) index bounds the rows it reads to the fresh
// requests — which the pairing caps keep few — however many stale ones the table holds.
func (s *Store) CountPendingChefDevicesSince(ctx context.Context, since time.Time, addressKey string) (int, int, error) {
	r, err := s.reader()
	if err != nil {
		return 0, 0, s.fail("count pending chef devices", err)
	}
	var all, at int64
	err = r.QueryRow(ctx, `SELECT COUNT(*), COALESCE(SUM(CASE WHEN address_key = $2 THEN 1 ELSE 0 END), 0)
		FROM chef_devices WHERE state = 'pending' AND updated_at > $1`, ms(since), addressKey).Scan(&all, &at)
	return int(all), int(at), s.fail("count pending chef devices", err)
}

// ListRecentChefDevices returns at most limit devices in state ("" = all), the most recently
// updated first; limit <= 0 means 100, and it is capped at 10000.
func (s *Store) ListRecentChefDevices(ctx context.Context, state store.DeviceState, limit int) ([]*store.ChefDevice, error) {
	r, err := s.reader()
	if err != nil {
		return nil, s.fail("list recent chef devices", err)
	}
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 10000)
	q, args := `SELECT `+deviceCols+` FROM chef_devices ORDER BY updated_at DESC, id DESC LIMIT $1`, []any{int64(limit)}
	if state != "" {
		q, args = `SELECT `+deviceCols+` FROM chef_devices WHERE state = $2 ORDER BY updated_at DESC, id DESC LIMIT $1`, []any{int64(limit), string(state)}
	}
	rows, err := r.Query(ctx, q, args...)
	if err != nil {
		return nil, s.fail("list recent chef devices", err)
	}
	defer rows.Close()
	var out []*store.ChefDevice
	for rows.Next() {
		d, err := scanDevice(rows.Scan)
		if err != nil {
			return nil, s.fail("list recent chef devices", err)
		}
		out = append(out, d)
	}
	return out, s.fail("list recent chef devices", rows.Err())
}

// DeletePendingChefDevicesBefore deletes the pending devices last updated before t, in one
// statement: a request refreshed or decided concurrently is either updated first (and no longer
// matches) or finds no row (ErrNotFound to its caller).
func (s *Store) DeletePendingChefDevicesBefore(ctx context.Context, t time.Time) (int, error) {
	n, err := s.exec(ctx, `DELETE FROM chef_devices WHERE state = 'pending' AND updated_at < $1`, ms(t))
	return int(n), s.fail("delete stale pending chef devices", err)
}
