package sqlstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/posgate/posgate/internal/store"
)

const familyCols = `f.id, f.client_id, f.user_id, f.audience, f.scope, f.created_at, f.absolute_expires_at,
	f.revoked_at, f.revoke_reason`

func scanFamily(sc func(...any) error, extra ...any) (*store.RefreshFamily, error) {
	var f store.RefreshFamily
	var created, absolute int64
	var revoked *int64
	dest := append([]any{&f.ID, &f.ClientID, &f.UserID, &f.Audience, &f.Scope, &created, &absolute, &revoked, &f.RevokeReason}, extra...)
	if err := sc(dest...); err != nil {
		return nil, err
	}
	f.CreatedAt, f.AbsoluteExpiresAt, f.RevokedAt = fromMS(created), fromMS(absolute), fromMSPtr(revoked)
	return &f, nil
}

func insertRefreshToken(ctx context.Context, tx Tx, t *store.RefreshToken, familyID string) error {
	_, err := tx.Exec(ctx, `INSERT INTO refresh_tokens (hash, family_id, created_at, idle_expires_at, rotated_at,
		successor_hash, successor_sealed) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		blob(t.Hash), familyID, ms(t.CreatedAt), ms(t.IdleExpiresAt), msPtr(t.RotatedAt),
		blob(t.SuccessorHash), blob(t.SuccessorSealed))
	return err
}

// CreateRefreshFamily stores f and its first token.
func (s *Store) CreateRefreshFamily(ctx context.Context, f *store.RefreshFamily, first *store.RefreshToken) error {
	return s.inTx(ctx, "create refresh family", func(tx Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO refresh_families (id, client_id, user_id, audience, scope, created_at,
			absolute_expires_at, revoked_at, revoke_reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			f.ID, f.ClientID, f.UserID, f.Audience, f.Scope, ms(f.CreatedAt), ms(f.AbsoluteExpiresAt),
			msPtr(f.RevokedAt), f.RevokeReason); err != nil {
			return err
		}
		if first == nil {
			return nil
		}
		if first.FamilyID != "" && first.FamilyID != f.ID {
			return fmt.Errorf("first token names family %q, not %q", first.FamilyID, f.ID)
		}
		return insertRefreshToken(ctx, tx, first, f.ID)
	})
}

// GetRefreshFamily returns the family id.
func (s *Store) GetRefreshFamily(ctx context.Context, id string) (*store.RefreshFamily, error) {
	r, err := s.reader()
	if err != nil {
		return nil, s.fail("get refresh family", err)
	}
	f, err := scanFamily(r.QueryRow(ctx, `SELECT `+familyCols+` FROM refresh_families f WHERE f.id = $1`, id).Scan)
	return f, s.fail("get refresh family", err)
}

// GetRefreshToken returns the token hashing to hash, with its family, in one indexed read.
func (s *Store) GetRefreshToken(ctx context.Context, hash []byte) (*store.RefreshToken, *store.RefreshFamily, error) {
	r, err := s.reader()
	if err != nil {
		return nil, nil, s.fail("get refresh token", err)
	}
	t, f, err := scanRefreshToken(r.QueryRow(ctx, `SELECT `+familyCols+`, `+refreshTokenCols+`
		FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id WHERE t.hash = $1`, blob(hash)).Scan)
	if err != nil {
		return nil, nil, s.fail("get refresh token", err)
	}
	return t, f, nil
}

// userCurrent holds when the user of family f exists, is enabled and was not updated after f was
// created: a family older than its user's last password change or disable was revoked with it.
const userCurrent = `EXISTS (SELECT 1 FROM users u WHERE u.id = f.user_id AND NOT u.disabled AND u.updated_at <= f.created_at)`

// RotateRefreshToken marks old rotated and stores next in its family, in one transaction. The
// conditional UPDATE (rotated_at IS NULL) changes exactly one row for exactly one of any number of
// concurrent callers; the others get ErrAlreadyUsed and change nothing. ErrNotFound when old does
// not exist. The successor always joins old's family (next.FamilyID, if set, must agree). With
// checkUser the same UPDATE also requires the family's user to be current, so the check costs no
// round trip of its own and sees the user as of the rotation, not as of an earlier read.
//
// The two statements need nothing from the caller between them, so they go to the database as
// one batch (one round trip to a server): the INSERT copies the family from the row the UPDATE
// just marked, and inserts nothing when the UPDATE changed nothing. Only a refused rotation
// costs a second read, to tell its reason.
func (s *Store) RotateRefreshToken(ctx context.Context, oldHash []byte, at time.Time, next *store.RefreshToken, successorSealed []byte, checkUser bool) error {
	var family string
	cond := ""
	if checkUser {
		cond = ` AND EXISTS (SELECT 1 FROM refresh_families f WHERE f.id = refresh_tokens.family_id AND ` + userCurrent + `)`
	}
	mark := &Stmt{SQL: `UPDATE refresh_tokens SET rotated_at = $2, successor_hash = $3, successor_sealed = $4
		WHERE hash = $1 AND rotated_at IS NULL AND ($5 = '' OR family_id = $5)` + cond + ` RETURNING family_id`,
		Args: []any{blob(oldHash), ms(at), blob(next.Hash), blob(successorSealed), next.FamilyID}, Scan: []any{&family}}
	insert := &Stmt{SQL: `INSERT INTO refresh_tokens (hash, family_id, created_at, idle_expires_at, rotated_at,
		successor_hash, successor_sealed) SELECT $1, family_id, $2, $3, $4, $5, $6 FROM refresh_tokens
		WHERE hash = $7 AND rotated_at = $8 AND successor_hash = $1`,
		Args: []any{blob(next.Hash), ms(next.CreatedAt), ms(next.IdleExpiresAt), msPtr(next.RotatedAt),
			blob(next.SuccessorHash), blob(next.SuccessorSealed), blob(oldHash), ms(at)}}
	if err := s.batch(ctx, mark, insert); err != nil {
		return s.fail("rotate refresh token", err)
	}
	if !mark.NoRows {
		if insert.Affected != 1 {
			return s.fail("rotate refresh token", fmt.Errorf("successor not stored (%d rows)", insert.Affected))
		}
		return nil
	}
	r, err := s.reader()
	if err != nil {
		return s.fail("rotate refresh token", err)
	}
	var rotated *int64
	var current int64
	switch err := r.QueryRow(ctx, `SELECT t.family_id, t.rotated_at, CASE WHEN `+userCurrent+` THEN 1 ELSE 0 END
		FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id WHERE t.hash = $1`, blob(oldHash)).Scan(&family, &rotated, &current); {
	case errors.Is(err, ErrNoRows):
		return s.fail("rotate refresh token", store.ErrNotFound)
	case err != nil:
		return s.fail("rotate refresh token", err)
	case rotated == nil && next.FamilyID != "" && next.FamilyID != family:
		return s.fail("rotate refresh token", fmt.Errorf("successor names family %q, not the rotated token's %q", next.FamilyID, family))
	case checkUser && current == 0:
		return s.fail("rotate refresh token", store.ErrUserChanged)
	case checkUser && rotated == nil:
		// Refused by a user check this read no longer fails (the user row was replaced in between):
		// nothing changed, and the caller may try again.
		return s.fail("rotate refresh token", errors.New("rotation refused by a user check that no longer fails"))
	default:
		return s.fail("rotate refresh token", store.ErrAlreadyUsed)
	}
}

// refreshTokenCols are the token's columns after familyCols, for scanRefreshToken.
const refreshTokenCols = `t.hash, t.created_at, t.idle_expires_at, t.rotated_at, t.successor_hash, t.successor_sealed`

// scanRefreshToken scans familyCols, refreshTokenCols and extra.
func scanRefreshToken(sc func(...any) error, extra ...any) (*store.RefreshToken, *store.RefreshFamily, error) {
	var t store.RefreshToken
	var created, idle int64
	var rotated *int64
	f, err := scanFamily(sc, append([]any{&t.Hash, &created, &idle, &rotated, &t.SuccessorHash, &t.SuccessorSealed}, extra...)...)
	if err != nil {
		return nil, nil, err
	}
	t.FamilyID = f.ID
	t.CreatedAt, t.IdleExpiresAt, t.RotatedAt = fromMS(created), fromMS(idle), fromMSPtr(rotated)
	t.Hash, t.SuccessorHash, t.SuccessorSealed = blobOut(t.Hash), blobOut(t.SuccessorHash), blobOut(t.SuccessorSealed)
	return &t, f, nil
}

// refreshUsable is store.RefreshUse's condition on token t and family f, over the arguments of
// refreshUseArgs ($1 to $8). The family's scope is its scope tokens joined by single spaces; a
// requested scope is in it when it is not empty, has no space and appears between spaces.
func refreshUsable(d Dialect) string {
	return refreshUsableOn(d, refreshArgs{"$1", "$2", "$5", "$6", "$7", "$8", "f", userCurrent})
}

// refreshArgs name what refreshUsableOn compares token t with: the request's values (parameters
// of one request, or columns of a combined statement's request row), the family's row (alias
// fam) and the condition that its user is current.
type refreshArgs struct{ hash, at, client, audience, notAudiences, scope, fam, userOK string }

func refreshUsableOn(d Dialect, a refreshArgs) string {
	texts, pos := `(SELECT value AS v FROM json_each(%s)) AS j`, "instr"
	if d == PostgreSQL {
		texts, pos = `jsonb_array_elements_text(CAST(CAST(%s AS text) AS jsonb)) AS j(v)`, "strpos"
	}
	f := a.fam
	return `t.hash = ` + a.hash + ` AND t.rotated_at IS NULL AND t.idle_expires_at > ` + a.at + ` AND ` + f + `.id = t.family_id
		AND ` + f + `.client_id = ` + a.client + ` AND ` + f + `.revoked_at IS NULL AND ` + f + `.absolute_expires_at > ` + a.at + `
		AND (` + a.audience + ` = '' OR ` + f + `.audience = ` + a.audience + `)
		AND NOT EXISTS (SELECT 1 FROM ` + fmt.Sprintf(texts, a.notAudiences) + ` WHERE j.v = ` + f + `.audience)
		AND NOT EXISTS (SELECT 1 FROM ` + fmt.Sprintf(texts, a.scope) + ` WHERE j.v = '' OR ` + pos + `(j.v, ' ') > 0
			OR ` + pos + `(' ' || ` + f + `.scope || ' ', ' ' || j.v || ' ') = 0)
		AND ` + a.userOK
}

// refreshUseArgs are $1 to $8 of refreshUsable and of the rotation's SET clause.
func refreshUseArgs(u *store.RefreshUse) ([]any, error) {
	notAud, err := json.Marshal(append([]string{}, u.NotAudiences...))
	if err != nil {
		return nil, err
	}
	scope, err := json.Marshal(append([]string{}, u.Scope...))
	if err != nil {
		return nil, err
	}
	return []any{blob(u.Hash), ms(u.At), blob(u.NextHash), blob(u.SuccessorSealed), u.ClientID, u.Audience,
		string(notAud), string(scope)}, nil
}

// UseRefreshToken reads the token and its family and rotates it when usable, in one statement on
// PostgreSQL (sendRefreshes, shared with the uses that arrive while one is in flight): a CTE reads
// the rows as they were, a second marks the token with an UPDATE whose condition is the whole of
// store.RefreshUse (the rotation races as in RotateRefreshToken: the row lock and the re-check of
// rotated_at let exactly one of concurrent callers change it), and a third inserts the successor
// from the row the UPDATE returned. On SQLite the same read, UPDATE and insert run in one
// transaction.
func (s *Store) UseRefreshToken(ctx context.Context, u *store.RefreshUse) (*store.RefreshUsed, error) {
	const op = "use refresh token"
	args, err := refreshUseArgs(u)
	if err != nil {
		return nil, s.fail(op, err)
	}
	if s.refreshes != nil {
		if _, err := s.writer(); err != nil {
			return nil, s.fail(op, err)
		}
		r := &refreshReq{u: u, args: args}
		if err := s.refreshes.do(ctx, r); err != nil {
			return nil, s.fail(op, err)
		}
		return r.res, nil
	}
	read := `SELECT ` + familyCols + `, ` + refreshTokenCols + `, CASE WHEN ` + userCurrent + ` THEN 1 ELSE 0 END
		FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id WHERE t.hash = $1`
	mark := `UPDATE refresh_tokens AS t SET rotated_at = $2, successor_hash = $3, successor_sealed = $4
		FROM refresh_families f WHERE ` + refreshUsable(s.dialect)
	var res store.RefreshUsed
	var current, inserted int64
	err = s.inTx(ctx, op, func(tx Tx) error {
		var err error
		inserted = 0
		if res.Token, res.Family, err = scanRefreshToken(tx.QueryRow(ctx, read, args[0]).Scan, &current); err != nil {
			return err
		}
		if n, err := tx.Exec(ctx, mark, args...); err != nil || n == 0 {
			return err
		}
		next := &store.RefreshToken{Hash: u.NextHash, CreatedAt: u.At, IdleExpiresAt: u.NextIdleExpiresAt}
		if res.Family.AbsoluteExpiresAt.Before(next.IdleExpiresAt) {
			next.IdleExpiresAt = res.Family.AbsoluteExpiresAt
		}
		inserted = 1
		return insertRefreshToken(ctx, tx, next, res.Family.ID)
	})
	if err != nil {
		return nil, err
	}
	res.UserCurrent, res.Rotated = current == 1, inserted == 1
	return &res, nil
}

// refreshReq is one UseRefreshToken of a combined statement: its arguments (refreshUseArgs) and
// what the statement found and did, set before its caller is answered.
type refreshReq struct {
	u    *store.RefreshUse
	args []any
	res  *store.RefreshUsed
}

// sendRefreshes decides the refresh uses of reqs in one statement (see combiner): the statement
// of UseRefreshToken over a CTE of the requests (one row each, from arrays, so one statement text
// serves any number of them). Each request reads its token's rows as they were, and its
// conditional UPDATE and successor insert race with every other statement's as a lone request's
// would. Requests are sent in the order of their hashes, so two statements lock the tokens they
// share in the same order. A request whose token or successor an earlier request of the batch
// names too is sent after the statement, so it sees that request's outcome as if it came later.
func (s *Store) sendRefreshes(ctx context.Context, reqs []*refreshReq) []error {
	errs := make([]error, len(reqs))
	order := make([]int, len(reqs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return bytes.Compare(reqs[a].u.Hash, reqs[b].u.Hash) })
	batch, later := splitRepeats(order, func(i int) []string {
		return []string{string(reqs[i].u.Hash), string(reqs[i].u.NextHash)}
	})
	n := max(len(batch), minCombinedRows) // the rows past the batch have no hash, and are skipped
	hashes, nexts, sealed := make([][]byte, n), make([][]byte, n), make([][]byte, n)
	ats, idles := make([]int64, n), make([]int64, n)
	clients, auds, notAuds, scopes := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for j := range n {
		notAuds[j], scopes[j] = "[]", "[]"
	}
	for j, i := range batch {
		a := reqs[i].args
		hashes[j], ats[j], nexts[j], sealed[j] = a[0].([]byte), a[1].(int64), a[2].([]byte), a[3].([]byte)
		clients[j], auds[j], notAuds[j], scopes[j] = a[4].(string), a[5].(string), a[6].(string), a[7].(string)
		idles[j] = ms(reqs[i].u.NextIdleExpiresAt)
	}
	// cur reads each request's rows by the token's primary key (LIMIT 1 keeps the planner from
	// joining the requests to a scan of the whole table, which the generic plan of a small table
	// would otherwise choose). The UPDATE joins the rows cur read and re-checks the token's own
	// state on the row it locks; the family's and the user's state are those cur read, as in a
	// lone request's statement, which reads them with the same snapshot.
	q := `WITH r AS (SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::bytea[], $4::bytea[], $5::text[], $6::text[],
			$7::text[], $8::text[], $9::bigint[]) AS r(hash, at, next, sealed, client, aud, notaud, scope, idle)
			WHERE hash IS NOT NULL),
		cur AS (SELECT x.*, r.next AS req_next, r.at AS req_at, r.sealed AS req_sealed, r.client AS req_client,
			r.aud AS req_aud, r.notaud AS req_notaud, r.scope AS req_scope, r.idle AS req_idle
			FROM r CROSS JOIN LATERAL (SELECT ` + familyCols + `, t.hash, t.created_at AS t_created_at, t.idle_expires_at,
				t.rotated_at, t.successor_hash, t.successor_sealed, CASE WHEN ` + userCurrent + ` THEN 1 ELSE 0 END AS user_current
				FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id WHERE t.hash = r.hash LIMIT 1) x),
		mark AS (UPDATE refresh_tokens AS t SET rotated_at = c.req_at, successor_hash = c.req_next, successor_sealed = c.req_sealed
			FROM cur c WHERE ` + refreshUsableOn(PostgreSQL, refreshArgs{"c.hash", "c.req_at", "c.req_client", "c.req_aud", "c.req_notaud",
		"c.req_scope", "c", "c.user_current = 1"}) + `
			RETURNING t.family_id, c.req_next AS next, c.req_at AS at, LEAST(c.req_idle, c.absolute_expires_at) AS idle),
		ins AS (INSERT INTO refresh_tokens (hash, family_id, created_at, idle_expires_at)
			SELECT next, family_id, at, idle FROM mark RETURNING hash)
		SELECT cur.id, cur.client_id, cur.user_id, cur.audience, cur.scope, cur.created_at, cur.absolute_expires_at,
			cur.revoked_at, cur.revoke_reason, cur.hash, cur.t_created_at, cur.idle_expires_at, cur.rotated_at,
			cur.successor_hash, cur.successor_sealed, cur.user_current, cur.req_next, ins.hash IS NOT NULL
		FROM cur LEFT JOIN ins ON ins.hash = cur.req_next`
	found := make(map[string]*store.RefreshUsed, len(batch))
	err := s.queryEach(ctx, q, []any{hashes, ats, nexts, sealed, clients, auds, notAuds, scopes, idles}, func(rows Rows) error {
		var res store.RefreshUsed
		var current int64
		var next []byte
		var inserted bool
		var err error
		if res.Token, res.Family, err = scanRefreshToken(rows.Scan, &current, &next, &inserted); err != nil {
			return err
		}
		res.UserCurrent, res.Rotated = current == 1, inserted
		found[string(next)] = &res
		return nil
	})
	for _, i := range batch {
		r := reqs[i]
		switch r.res = found[string(r.u.NextHash)]; {
		case err != nil:
			errs[i] = err
		case r.res == nil:
			errs[i] = ErrNoRows
		}
	}
	for _, i := range later {
		errs[i] = s.sendRefreshes(ctx, reqs[i:i+1])[0]
	}
	return errs
}

// RevokeRefreshFamily marks the family revoked; revoking it again keeps the first time and reason.
func (s *Store) RevokeRefreshFamily(ctx context.Context, id string, at time.Time, reason string) error {
	return s.inTx(ctx, "revoke refresh family", func(tx Tx) error {
		n, err := tx.Exec(ctx, `UPDATE refresh_families SET revoked_at = $2, revoke_reason = $3
			WHERE id = $1 AND revoked_at IS NULL`, id, ms(at), reason)
		if err != nil || n == 1 {
			return err
		}
		var one int64
		return tx.QueryRow(ctx, `SELECT 1 FROM refresh_families WHERE id = $1`, id).Scan(&one)
	})
}

// RevokeUserRefreshFamilies revokes every live (unrevoked, not absolutely expired at `at`) family
// of the user and returns their ids, sorted.
func (s *Store) RevokeUserRefreshFamilies(ctx context.Context, userID string, at time.Time, reason string) ([]string, error) {
	var ids []string
	err := s.inTx(ctx, "revoke user refresh families", func(tx Tx) error {
		ids = ids[:0]
		rows, err := tx.Query(ctx, `UPDATE refresh_families SET revoked_at = $2, revoke_reason = $3
			WHERE user_id = $1 AND revoked_at IS NULL AND absolute_expires_at > $2 RETURNING id`, userID, ms(at), reason)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(ids)
	return ids, nil
}

// DeleteRefreshExpiredBefore removes families absolutely expired before t; their tokens go with
// them (ON DELETE CASCADE).
func (s *Store) DeleteRefreshExpiredBefore(ctx context.Context, t time.Time) error {
	_, err := s.exec(ctx, `DELETE FROM refresh_families WHERE absolute_expires_at < $1`, ms(t))
	return s.fail("delete expired refresh families", err)
}
