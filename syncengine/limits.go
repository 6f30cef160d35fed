package syncengine

import (
	"fmt"
	"sort"

	"github.com/tidemark/tidemark/apperr"
	"github.com/tidemark/tidemark/collections"
)

// PushLimits bound the bytes of one push's input, as
// collections.DocumentBytes counts them; zero means the default
// (collections.DefaultMaxRowBytes, collections.DefaultMaxPushBytes).
type PushLimits struct {
	MaxRowBytes  int
	MaxPushBytes int
}

// SetPushLimits sets the byte limits of push input. Call it before serving.
func (e *Engine) SetPushLimits(l PushLimits) { e.pushLimits = l }

func (l PushLimits) withDefaults() PushLimits {
	if l.MaxRowBytes <= 0 {
		l.MaxRowBytes = collections.DefaultMaxRowBytes
	}
	if l.MaxPushBytes <= 0 {
		l.MaxPushBytes = collections.DefaultMaxPushBytes
	}
	return l
}

// checkPushBytes refuses a push whose rows, or one of them, are larger than
// the limits, before anything is written. A row too large is named with its
// largest field, which is most likely what the client must shorten.
func checkPushBytes(l PushLimits, rows []PushRow) error {
	l = l.withDefaults()
	total := 0
	for i, r := range rows {
		n := collections.DocumentBytes(r.New)
		if r.Assumed != nil {
			n += collections.DocumentBytes(*r.Assumed)
		}
		if n > l.MaxRowBytes {
			return apperr.Invalid(largestField(i, r), "the row holds %d bytes, more than the %d a row may hold", n, l.MaxRowBytes)
		}
		total += n
		if total > l.MaxPushBytes {
			return apperr.Invalid("rows", "rows[0..%d] hold %d bytes, more than the %d a push may hold; push fewer rows at a time", i, total, l.MaxPushBytes)
		}
	}
	return nil
}

// largestField names the longest string of row i, as a push error's
// field; on a tie the new state's, then the first by name, so that the
// error does not change with the order of a map.
func largestField(i int, r PushRow) string {
	best, size := fmt.Sprintf("rows[%d]", i), -1
	look := func(state string, d collections.Document) {
		names := make([]string, 0, len(d.Fields))
		for name := range d.Fields {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			if s, ok := d.Fields[name].(string); ok && len(s) > size {
				best, size = fmt.Sprintf("rows[%d].%s.%s", i, state, name), len(s)
			}
		}
	}
	look("newDocumentState", r.New)
	if r.Assumed != nil {
		look("assumedMasterState", *r.Assumed)
	}
	return best
}
