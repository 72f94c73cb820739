package sqlite

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// The writer's VFS: SQLite's own unix VFS, except that the writes of the write-ahead log reach
// the file in one pwrite per commit instead of two per frame.
//
// SQLite appends a WAL frame as two writes (its 24-byte header, then the page), so a commit of n
// pages costs 2n pwrite64 calls before its fsync; each is a system call of several µs on these
// machines, made while the writer's turn is held. Here the log's writes are gathered in a buffer
// while they are contiguous and handed to the unix VFS as one write when SQLite does anything
// else with the file: sync it (every COMMIT, synchronous=FULL), read it, ask its size, truncate,
// close, or control it. The buffer is also written out before the writer publishes a new
// wal-index header (xShmBarrier on the database file, see walIndexWriteHdr in wal.c), so no other
// connection can learn of a frame that is not in the file.
//
// It is correct only with synchronous=FULL (writerParams; TestWALVFSNeedsFullSync keeps them
// together): then every COMMIT's sync has written the buffer out, and checked the write, before
// the header that names its frames is published, and the barrier finds nothing to write. Under a
// weaker setting the barrier would be the first write-out, and xShmBarrier cannot report a failed
// write: the header would name frames that are not in the file.
//
// Durability is unchanged: SQLite considers a transaction committed once its frames are written
// and synced, and every sync writes the buffer out first and fails if that write fails (the
// COMMIT then fails, as it would have on the pwrite). Bytes still in the buffer belong to a
// transaction whose COMMIT has not returned; a kill -9 then loses them as it loses any
// unacknowledged write, and SQLite's recovery ignores a log's torn tail by its checksums.
const (
	walVFSName = "posgate-wal"
	// walBufMax is the most one write may carry: the unix VFS writes at most 0x1ffff bytes per
	// call (seekAndWriteFd). A write that would overflow the buffer writes it out first.
	walBufMax = 0x1ffff
)

var (
	walVFSOnce sync.Once
	walVFSErr  error

	walVFS     sqlite3.Tsqlite3_vfs // registered with SQLite: never moves, never freed
	unixVFS    uintptr
	walMethods sqlite3.Tsqlite3_io_methods // for log files: unix's, with the buffer
	dbMethods  sqlite3.Tsqlite3_io_methods // for database files: unix's, xShmBarrier writing the buffer out
	// The io_methods unix gives log files (no locks) and database files, which the tables above
	// extend, and copies of them to call.
	walOrigPtr, dbOrigPtr uintptr
	walOrig, dbOrig       sqlite3.Tsqlite3_io_methods
	walOnce, dbOnce       sync.Once

	walFiles sync.Map // file pointer (uintptr) → *walFile, for the open log files
	dbFiles  sync.Map // file pointer (uintptr) → the name of its log, for the open database files
)

// walFile is the buffer of one open log file. Its connection uses it from one goroutine at a
// time; mu is for the barrier of another connection on the same database (see dbShmBarrier).
type walFile struct {
	name string
	mu   sync.Mutex
	buf  []byte // pending bytes, written at off
	off  int64
}

// C function pointer types of sqlite3_vfs and sqlite3_io_methods, as the transpiled SQLite calls
// them.
type (
	xOpenFn      = func(*libc.TLS, uintptr, uintptr, uintptr, int32, uintptr) int32
	xCloseFn     = func(*libc.TLS, uintptr) int32
	xReadWriteFn = func(*libc.TLS, uintptr, uintptr, int32, int64) int32
	xTruncateFn  = func(*libc.TLS, uintptr, int64) int32
	xSyncFn      = func(*libc.TLS, uintptr, int32) int32
	xFileSizeFn  = func(*libc.TLS, uintptr, uintptr) int32
	xControlFn   = func(*libc.TLS, uintptr, int32, uintptr) int32
	xBarrierFn   = func(*libc.TLS, uintptr)
)

// fn reads a C function pointer of the transpiled code as the Go function it is.
func fn[F any](p uintptr) F { return *(*F)(unsafe.Pointer(&p)) }

// at reads C memory of the transpiled code (an address held as a uintptr) as a T.
func at[T any](p uintptr) *T { return *(**T)(unsafe.Pointer(&p)) }

// cptr makes a Go function a C function pointer of the transpiled code.
func cptr[F any](f F) uintptr { return *(*uintptr)(unsafe.Pointer(&f)) }

// registerWALVFS registers the writer's VFS with SQLite once per process.
func registerWALVFS() error {
	walVFSOnce.Do(func() {
		tls := libc.NewTLS()
		defer tls.Close()
		unixVFS = sqlite3.Xsqlite3_vfs_find(tls, 0)
		if unixVFS == 0 {
			walVFSErr = errNoUnixVFS
			return
		}
		walVFS = *at[sqlite3.Tsqlite3_vfs](unixVFS)
		walVFS.FpNext = 0
		name, err := libc.CString(walVFSName)
		if err != nil {
			walVFSErr = err
			return
		}
		walVFS.FzName = name
		walVFS.FxOpen = cptr[xOpenFn](walOpen)
		if rc := sqlite3.Xsqlite3_vfs_register(tls, uintptr(unsafe.Pointer(&walVFS)), 0); rc != sqlite3.SQLITE_OK {
			walVFSErr = fmt.Errorf("sqlite: registering the writer's VFS failed: code %d", rc)
		}
	})
	return walVFSErr
}

var errNoUnixVFS = errors.New("sqlite: no default VFS to extend")

// walOpen opens the file with the unix VFS, then gives log and database files the methods above.
// Files whose methods are not the ones the tables were built from keep their own.
func walOpen(tls *libc.TLS, _ uintptr, zName uintptr, pFile uintptr, flags int32, pOutFlags uintptr) int32 {
	rc := fn[xOpenFn](at[sqlite3.Tsqlite3_vfs](unixVFS).FxOpen)(tls, unixVFS, zName, pFile, flags, pOutFlags)
	if rc != sqlite3.SQLITE_OK {
		return rc
	}
	f := at[sqlite3.Tsqlite3_file](pFile)
	if f.FpMethods == 0 || flags&(sqlite3.SQLITE_OPEN_WAL|sqlite3.SQLITE_OPEN_MAIN_DB) == 0 {
		return rc
	}
	name := libc.GoString(zName)
	if flags&sqlite3.SQLITE_OPEN_WAL != 0 {
		walOnce.Do(func() { buildWALMethods(f.FpMethods) })
		if f.FpMethods == walOrigPtr {
			walFiles.Store(pFile, &walFile{name: name})
			f.FpMethods = uintptr(unsafe.Pointer(&walMethods))
		}
		return rc
	}
	dbOnce.Do(func() { buildDBMethods(f.FpMethods) })
	if f.FpMethods == dbOrigPtr {
		dbFiles.Store(pFile, name+"-wal")
		f.FpMethods = uintptr(unsafe.Pointer(&dbMethods))
	}
	return rc
}

func buildDBMethods(orig uintptr) {
	dbOrigPtr, dbOrig = orig, *at[sqlite3.Tsqlite3_io_methods](orig)
	dbMethods = dbOrig
	dbMethods.FxClose = cptr[xCloseFn](dbClose)
	if dbOrig.FxShmBarrier != 0 {
		dbMethods.FxShmBarrier = cptr[xBarrierFn](dbShmBarrier)
	}
}

func buildWALMethods(orig uintptr) {
	walOrigPtr, walOrig = orig, *at[sqlite3.Tsqlite3_io_methods](orig)
	walMethods = walOrig
	walMethods.FxClose = cptr[xCloseFn](walClose)
	walMethods.FxRead = cptr[xReadWriteFn](walRead)
	walMethods.FxWrite = cptr[xReadWriteFn](walWrite)
	walMethods.FxTruncate = cptr[xTruncateFn](walTruncate)
	walMethods.FxSync = cptr[xSyncFn](walSync)
	walMethods.FxFileSize = cptr[xFileSizeFn](walFileSize)
	walMethods.FxFileControl = cptr[xControlFn](walFileControl)
}

// flush writes the buffered bytes of the log file at pFile out, in one write.
func flush(tls *libc.TLS, pFile uintptr) int32 {
	v, ok := walFiles.Load(pFile)
	if !ok {
		return sqlite3.SQLITE_OK
	}
	w := v.(*walFile)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flush(tls, pFile)
}

// flush writes w's buffer out; w.mu is held.
func (w *walFile) flush(tls *libc.TLS, pFile uintptr) int32 {
	if len(w.buf) == 0 {
		return sqlite3.SQLITE_OK
	}
	rc := fn[xReadWriteFn](walOrig.FxWrite)(tls, pFile, uintptr(unsafe.Pointer(&w.buf[0])), int32(len(w.buf)), w.off)
	w.buf = w.buf[:0] // written or failed: SQLite writes a failed commit's frames again
	return rc
}

func walWrite(tls *libc.TLS, pFile uintptr, zBuf uintptr, iAmt int32, iOfst int64) int32 {
	v, ok := walFiles.Load(pFile)
	if !ok {
		return fn[xReadWriteFn](walOrig.FxWrite)(tls, pFile, zBuf, iAmt, iOfst)
	}
	w := v.(*walFile)
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 && (iOfst != w.off+int64(len(w.buf)) || len(w.buf)+int(iAmt) > walBufMax) {
		if rc := w.flush(tls, pFile); rc != sqlite3.SQLITE_OK {
			return rc
		}
	}
	if int(iAmt) > walBufMax {
		return fn[xReadWriteFn](walOrig.FxWrite)(tls, pFile, zBuf, iAmt, iOfst)
	}
	if len(w.buf) == 0 {
		w.off = iOfst
	}
	w.buf = append(w.buf, unsafe.Slice(at[byte](zBuf), iAmt)...)
	return sqlite3.SQLITE_OK
}

func walRead(tls *libc.TLS, pFile uintptr, zBuf uintptr, iAmt int32, iOfst int64) int32 {
	if rc := flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return fn[xReadWriteFn](walOrig.FxRead)(tls, pFile, zBuf, iAmt, iOfst)
}

func walSync(tls *libc.TLS, pFile uintptr, flags int32) int32 {
	if rc := flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return fn[xSyncFn](walOrig.FxSync)(tls, pFile, flags)
}

func walTruncate(tls *libc.TLS, pFile uintptr, size int64) int32 {
	if rc := flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return fn[xTruncateFn](walOrig.FxTruncate)(tls, pFile, size)
}

func walFileSize(tls *libc.TLS, pFile uintptr, pSize uintptr) int32 {
	if rc := flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return fn[xFileSizeFn](walOrig.FxFileSize)(tls, pFile, pSize)
}

func walFileControl(tls *libc.TLS, pFile uintptr, op int32, pArg uintptr) int32 {
	if rc := flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return fn[xControlFn](walOrig.FxFileControl)(tls, pFile, op, pArg)
}

// walClose writes the buffer out and closes the file; a failed write is what the close reports.
func walClose(tls *libc.TLS, pFile uintptr) int32 {
	rc := flush(tls, pFile)
	walFiles.Delete(pFile)
	if crc := fn[xCloseFn](walOrig.FxClose)(tls, pFile); rc == sqlite3.SQLITE_OK {
		rc = crc
	}
	return rc
}

func dbClose(tls *libc.TLS, pFile uintptr) int32 {
	dbFiles.Delete(pFile)
	return fn[xCloseFn](dbOrig.FxClose)(tls, pFile)
}

// dbShmBarrier writes out the buffered logs of the database before the barrier SQLite puts
// between the two copies of a new wal-index header (readers take a header only when both copies
// agree), so a header never names a frame that is not in the file. With synchronous=FULL, the
// only setting this VFS is used with, the COMMIT's sync has already written them (and reported a
// failed write); this is a second line, which cannot report one.
func dbShmBarrier(tls *libc.TLS, pFile uintptr) {
	if name, ok := dbFiles.Load(pFile); ok {
		walFiles.Range(func(k, v any) bool {
			if v.(*walFile).name == name {
				_ = flush(tls, k.(uintptr))
			}
			return true
		})
	}
	fn[xBarrierFn](dbOrig.FxShmBarrier)(tls, pFile)
}
