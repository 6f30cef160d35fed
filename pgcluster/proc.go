package pgcluster

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// PostgreSQL server processes (the postmaster and all its children) run
// with the data directory as their working directory. On Linux that lets
// us tell, through /proc, whether a process belongs to a given cluster.

// procAvailable reports whether /proc can answer cwd questions.
func procAvailable() bool {
	_, err := os.Readlink("/proc/self/cwd")
	return err == nil
}

// processCwdIs reports whether process pid runs in folder dir (a path with
// symlinks resolved). known is false when that cannot be determined.
func processCwdIs(pid int, dir string) (same, known bool) {
	if !procAvailable() {
		return false, false
	}
	cwd, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
	if err != nil {
		if !processRunning(pid) {
			return false, true
		}
		return false, false // e.g. another user's process while not root
	}
	return filepath.Clean(cwd) == dir, true
}

// processesIn lists the processes whose working directory is dir (a path
// with symlinks resolved). ok is false when /proc is not available.
func processesIn(dir string) (pids []int, ok bool) {
	if !procAvailable() {
		return nil, false
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, false
	}
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd")
		if err == nil && filepath.Clean(cwd) == dir {
			pids = append(pids, pid)
		}
	}
	return pids, true
}

// processRunning is processAlive, except that a zombie (exited, not yet
// reaped by its parent) does not count as running.
func processRunning(pid int) bool {
	if !processAlive(pid) {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true // no /proc: trust processAlive
	}
	// The state follows the command name, which is in parentheses.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}
