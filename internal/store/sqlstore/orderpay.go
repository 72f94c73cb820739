package sqlstore

import (
	"context"
	"errors"
	"time"

	"github.com/posgate/posgate/internal/store"
)

const orderpayOutletSelect = `SELECT id, provider_outlet_id, pos_remote_id, provider_id, provider_name,
	auth_secret_hash, disabled, created_at, updated_at FROM orderpay_outlets`

// CreateOrderpayOutlet stores o; ErrConflict on a duplicate id or provider_outlet_id.
func (s *Store) CreateOrderpayOutlet(ctx context.Context, o *store.OrderpayOutlet) error {
	_, err := s.exec(ctx, `INSERT INTO orderpay_outlets (id, provider_outlet_id, pos_remote_id, provider_id,
		provider_name, auth_secret_hash, disabled, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		o.ID, o.ProviderOutletID, o.POSRemoteID, o.ProviderID, o.ProviderName, o.AuthSecretHash, o.Disabled,
		ms(o.CreatedAt), ms(o.UpdatedAt))
	return s.fail("create orderpay outlet", err)
}

// GetOrderpayOutlet returns the outlet with id id.
func (s *Store) GetOrderpayOutlet(ctx context.Context, id string) (*store.OrderpayOutlet, error) {
	return s.oneOrderpayOutlet(ctx, "get orderpay outlet", orderpayOutletSelect+` WHERE id = $1`, id)
}

// GetOrderpayOutletByProviderID returns the outlet whose provider_outlet_id is providerOutletID.
func (s *Store) GetOrderpayOutletByProviderID(ctx context.Context, providerOutletID string) (*store.OrderpayOutlet, error) {
	return s.oneOrderpayOutlet(ctx, "get orderpay outlet by provider id",
		orderpayOutletSelect+` WHERE provider_outlet_id = $1`, providerOutletID)
}

// ListOrderpayOutlets returns every outlet, oldest first.
func (s *Store) ListOrderpayOutlets(ctx context.Context) ([]*store.OrderpayOutlet, error) {
	l, err := s.queryOrderpayOutlets(ctx, orderpayOutletSelect+` ORDER BY created_at, id`)
	return l, s.fail("list orderpay outlets", err)
}

func (s *Store) oneOrderpayOutlet(ctx context.Context, op, query string, arg any) (*store.OrderpayOutlet, error) {
	l, err := s.queryOrderpayOutlets(ctx, query, arg)
	return firstOf(s, op, l, err)
}

func (s *Store) queryOrderpayOutlets(ctx context.Context, query string, args ...any) ([]*store.OrderpayOutlet, error) {
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*store.OrderpayOutlet
	for rows.Next() {
		var o store.OrderpayOutlet
		var created, updated int64
		if err := rows.Scan(&o.ID, &o.ProviderOutletID, &o.POSRemoteID, &o.ProviderID, &o.ProviderName,
			&o.AuthSecretHash, &o.Disabled, &created, &updated); err != nil {
			return nil, err
		}
		o.CreatedAt, o.UpdatedAt = fromMS(created), fromMS(updated)
		out = append(out, &o)
	}
	return out, rows.Err()
}

// SetOrderpayOutletSecret replaces the outlet's AuthSecret hash.
func (s *Store) SetOrderpayOutletSecret(ctx context.Context, id, secretHash string, at time.Time) error {
	n, err := s.exec(ctx, `UPDATE orderpay_outlets SET auth_secret_hash = $2, updated_at = $3 WHERE id = $1`,
		id, secretHash, ms(at))
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	return s.fail("set orderpay outlet secret", err)
}

// SetOrderpayOutletDisabled disables or enables the outlet.
func (s *Store) SetOrderpayOutletDisabled(ctx context.Context, id string, disabled bool, at time.Time) error {
	n, err := s.exec(ctx, `UPDATE orderpay_outlets SET disabled = $2, updated_at = $3 WHERE id = $1`,
		id, disabled, ms(at))
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	return s.fail("set orderpay outlet disabled", err)
}

// CreateOrderpayTicket stores an unused ticket.
func (s *Store) CreateOrderpayTicket(ctx context.Context, t *store.OrderpayTicket) error {
	_, err := s.exec(ctx, `INSERT INTO orderpay_tickets (hash, outlet_id, created_at, expires_at, used_at)
		VALUES ($1, $2, $3, $4, NULL)`, blob(t.Hash), t.OutletID, ms(t.CreatedAt), ms(t.ExpiresAt))
	return s.fail("create orderpay ticket", err)
}

// ConsumeOrderpayTicket is one conditional UPDATE (unused and unexpired at `at`): the database
// serialises concurrent writers on the row, so exactly one caller sees it returned. Only a loser
// reads again, to tell a used ticket from an unknown or expired one.
func (s *Store) ConsumeOrderpayTicket(ctx context.Context, hash []byte, at time.Time) (*store.OrderpayTicket, error) {
	const op = "consume orderpay ticket"
	w, err := s.writer()
	if err != nil {
		return nil, s.fail(op, err)
	}
	t := store.OrderpayTicket{Hash: blob(hash)}
	var created, expires int64
	err = w.QueryRow(ctx, `UPDATE orderpay_tickets SET used_at = $2
		WHERE hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING outlet_id, created_at, expires_at`,
		blob(hash), ms(at)).Scan(&t.OutletID, &created, &expires)
	if errors.Is(err, ErrNoRows) {
		var used *int64
		switch err := w.QueryRow(ctx, `SELECT used_at FROM orderpay_tickets WHERE hash = $1`, blob(hash)).Scan(&used); {
		case err == nil && used != nil:
			return nil, s.fail(op, store.ErrAlreadyUsed)
		case err == nil || errors.Is(err, ErrNoRows):
			return nil, s.fail(op, store.ErrNotFound) // expired, or never issued
		default:
			return nil, s.fail(op, err)
		}
	}
	if err != nil {
		return nil, s.fail(op, err)
	}
	t.CreatedAt, t.ExpiresAt = fromMS(created), fromMS(expires)
	u := at.UTC().Truncate(time.Millisecond)
	t.UsedAt = &u
	return &t, nil
}

// DeleteOrderpayTicketsExpiredBefore drops tickets that expired before t.
func (s *Store) DeleteOrderpayTicketsExpiredBefore(ctx context.Context, t time.Time) error {
	_, err := s.exec(ctx, `DELETE FROM orderpay_tickets WHERE expires_at < $1`, ms(t))
	return s.fail("delete expired orderpay tickets", err)
}
