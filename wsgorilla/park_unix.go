//go:build unix

package wsgorilla

import "syscall"

// readable is RawConn.Read's callback for park: true (stop waiting) once
// the socket has data, an end or an error to read.
func readable(fd uintptr) bool {
	var b [1]byte
	for {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return false
		default:
			return true
		}
	}
}
