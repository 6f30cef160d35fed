package wsgorilla

import (
	"net"
	"sync"
	"time"
)

// batchConn is the socket under a Transport connection's gorilla Conn. While
// the connection's writer drains its queue (begin … flush) every frame
// gorilla writes is appended to one buffer, and flush sends them all in one
// write: one syscall per drain instead of one per message. Outside a drain
// (the handshake, gorilla's own control frames) writes go straight through.
// mu also orders those direct writes after a flush in progress.
type batchConn struct {
	net.Conn

	mu       sync.Mutex
	batching bool
	buf      *[]byte
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.batching {
		*b.buf = append(*b.buf, p...)
		return len(p), nil
	}
	return b.Conn.Write(p)
}

// begin starts collecting writes.
func (b *batchConn) begin() {
	b.mu.Lock()
	b.batching = true
	if b.buf == nil {
		b.buf = getBatchBuffer()
	}
	b.mu.Unlock()
}

// flush writes what was collected since begin in one write, bounded by
// deadline (zero: no bound), and hands the buffer back to the pool.
func (b *batchConn) flush(deadline time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batching = false
	buf := b.buf
	b.buf = nil
	if buf == nil {
		return nil
	}
	defer putBatchBuffer(buf)
	if len(*buf) == 0 {
		return nil
	}
	if err := b.Conn.SetWriteDeadline(deadline); err != nil {
		return err
	}
	_, err := b.Conn.Write(*buf)
	return err
}

// maxPooledBatch is the largest batch buffer kept for reuse: a burst to one
// connection must not leave every pooled buffer that large.
const maxPooledBatch = 64 << 10

var batchBuffers = sync.Pool{New: func() any {
	b := make([]byte, 0, 4096)
	return &b
}}

func getBatchBuffer() *[]byte { return batchBuffers.Get().(*[]byte) }

func putBatchBuffer(b *[]byte) {
	if cap(*b) > maxPooledBatch {
		return
	}
	*b = (*b)[:0]
	batchBuffers.Put(b)
}
