package pgcluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// account is the OS user PostgreSQL's programs run as.
type account struct {
	name       string
	home       string
	uid, gid   int
	groups     []int
	switchUser bool // true when we are root and run PostgreSQL as name
}

// resolveAccount picks the OS user PostgreSQL runs as.
func resolveAccount(runAs string) (*account, error) {
	if os.Geteuid() != 0 {
		a := &account{uid: os.Geteuid(), gid: os.Getegid()}
		if u, err := user.Current(); err == nil {
			a.name, a.home = u.Username, u.HomeDir
		}
		return a, nil
	}
	if runAs == "" {
		runAs = DefaultRunAs
	}
	u, err := user.Lookup(runAs)
	if err != nil {
		return nil, fmt.Errorf("running as root, so PostgreSQL (which refuses to run as root) must run as user %q, "+
			"but looking it up failed: %v; create that user (e.g. `useradd --system --user-group %s`) or set Config.RunAs", runAs, err, runAs)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("user %q has non-numeric ids %s:%s", runAs, u.Uid, u.Gid)
	}
	if uid == 0 {
		return nil, fmt.Errorf("RunAs user %q is root; PostgreSQL refuses to run as root, choose an unprivileged user", runAs)
	}
	a := &account{name: u.Username, home: u.HomeDir, uid: uid, gid: gid, switchUser: true}
	gids, _ := u.GroupIds()
	for _, g := range gids {
		if n, err := strconv.Atoi(g); err == nil {
			a.groups = append(a.groups, n)
		}
	}
	if !slices.Contains(a.groups, gid) {
		a.groups = append(a.groups, gid)
	}
	return a, nil
}

// command prepares one of PostgreSQL's programs to run as c.acct, in the
// cluster folder (or dir when not empty).
func (c *Cluster) command(ctx context.Context, dir, program string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, program), args...)
	cmd.Dir = dir
	if cmd.Dir == "" {
		cmd.Dir = c.clusterDir
	}
	cmd.WaitDelay = 5 * time.Second
	env := make([]string, 0, len(os.Environ())+4)
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		// PG* variables (PGDATA, PGPORT, ...) must not redirect our programs.
		if strings.HasPrefix(k, "PG") {
			continue
		}
		if c.acct.switchUser && (k == "HOME" || k == "USER" || k == "LOGNAME") {
			continue
		}
		env = append(env, kv)
	}
	if c.acct.switchUser {
		env = append(env, "HOME="+c.acct.home, "USER="+c.acct.name, "LOGNAME="+c.acct.name)
	}
	cmd.Env = env
	setCredential(cmd, c.acct)
	return cmd
}
