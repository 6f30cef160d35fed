//go:build !unix

package wsgorilla

// readable is RawConn.Read's callback for park. Without a way to peek at a
// socket here it stops waiting at once, and the reader waits in gorilla's
// read instead: the same behaviour, with a deeper idle stack.
func readable(uintptr) bool { return true }
