package tokensource

import (
	"net/http"
	"sync/atomic"
	"time"
)

// SkewThreshold is the smallest difference between a server's Date header and the local clock
// that Skew acts on: Date has a resolution of one second and the answer takes time to arrive.
const SkewThreshold = 5 * time.Second

// Skew corrects a local clock that disagrees with a server's, for credentials that carry a time
// the server checks against a window (a doshii location JWT's timestamp, a jackpot assertion's
// iat). It learns the offset from the Date header of a refused request; the zero value assumes
// no offset. It is safe for concurrent use.
type Skew struct {
	off atomic.Int64 // nanoseconds to add to the local clock
}

// Now returns local corrected by the learnt offset.
func (s *Skew) Now(local time.Time) time.Time { return local.Add(time.Duration(s.off.Load())) }

// Offset is the correction currently applied.
func (s *Skew) Offset() time.Duration { return time.Duration(s.off.Load()) }

// Learn reads the Date header of resp, received when the local clock said local, and adopts the
// server's time when the corrected clock is more than SkewThreshold away from it. It reports
// whether the correction changed, which is when a request refused for its time is worth sending
// once more.
func (s *Skew) Learn(resp *http.Response, local time.Time) bool {
	if resp == nil {
		return false
	}
	d, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return false
	}
	diff := d.Sub(s.Now(local))
	if diff > -SkewThreshold && diff < SkewThreshold {
		return false
	}
	s.off.Store(int64(d.Sub(local)))
	return true
}
