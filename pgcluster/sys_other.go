//go:build !unix

package pgcluster

import (
	"io/fs"
	"os"
	"os/exec"
)

// On systems without Unix credentials PostgreSQL runs as the current user,
// data folders are not locked and process checks are conservative.

func setCredential(cmd *exec.Cmd, a *account) {}

func tryLock(f *os.File) error { return nil }

func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	_ = p.Release()
	return true
}

func fileOwner(fi fs.FileInfo) (uid, gid int, ok bool) { return 0, 0, false }
