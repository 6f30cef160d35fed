//go:build unix

package pgcluster

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"syscall"
)

// setCredential makes cmd run as the account's user when switching users.
func setCredential(cmd *exec.Cmd, a *account) {
	if !a.switchUser {
		return
	}
	groups := make([]uint32, 0, len(a.groups))
	for _, g := range a.groups {
		groups = append(groups, uint32(g))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{
		Uid:    uint32(a.uid),
		Gid:    uint32(a.gid),
		Groups: groups,
	}}
}

// tryLock takes an exclusive advisory lock on f without waiting.
func tryLock(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return errLocked
	}
	return err
}

// processAlive reports whether a process with this pid exists.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// fileOwner returns the owner of a file.
func fileOwner(fi fs.FileInfo) (uid, gid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return int(st.Uid), int(st.Gid), true
}
