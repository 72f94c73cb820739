package postgres

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/posgate/posgate/internal/store/pgtest"
	"github.com/posgate/posgate/internal/testutil/crashtest"
)

// TestKill9KeepsAcknowledgedWrites runs 32 writers in a child process (single-use records and
// refresh rotations, which go to the server as one batch each), kills the child with SIGKILL in
// the middle of the stream, and checks that every write the child had acknowledged (printed after
// the call returned) is in the database.
func TestKill9KeepsAcknowledgedWrites(t *testing.T) {
	if dsn := crashtest.Child(); dsn != "" {
		s, err := Open(context.Background(), dsn)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		crashtest.Writers(s, 32, nil)
		return
	}
	dsn := pgtest.NewDatabase(t)
	acks := crashtest.Kill9(t, dsn, 600)
	s, err := Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	crashtest.Check(t, s, acks)
	t.Logf("%d single uses and %d rotations acknowledged, all present after kill -9", len(acks.Uses), len(acks.Rots))
}
