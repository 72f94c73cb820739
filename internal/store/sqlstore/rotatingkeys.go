package sqlstore

import (
	"context"
	"time"

	"github.com/posgate/posgate/internal/store"
)

// retireKeysForNew prepares the addition of a newest key to an owner's rotating key list (jackpot
// API signatures, doshii vendor keys): it locks the owner row, ends every older key's validity at
// overlapEnd (unless it already ends sooner), and returns the position the new key takes. Table
// and column names are constants of this package, never input. Touching the owner row locks it
// (PostgreSQL; SQLite has one writer anyway) for the rest of the transaction, so two concurrent
// additions to one owner queue instead of racing for the same position.
func retireKeysForNew(ctx context.Context, tx Tx, ownerTable, keyTable, ownerColumn, ownerID string, overlapEnd time.Time) (int64, error) {
	n, err := tx.Exec(ctx, `UPDATE `+ownerTable+` SET id = id WHERE id = $1`, ownerID)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, store.ErrNotFound
	}
	if _, err := tx.Exec(ctx, `UPDATE `+keyTable+` SET not_after = $2
		WHERE `+ownerColumn+` = $1 AND (not_after IS NULL OR not_after > $2)`, ownerID, ms(overlapEnd)); err != nil {
		return 0, err
	}
	var pos int64
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(pos), 0) FROM `+keyTable+` WHERE `+ownerColumn+` = $1`,
		ownerID).Scan(&pos); err != nil {
		return 0, err
	}
	return pos + 1, nil
}
