package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Defaults of the supervision (Config.Supervise).
const (
	DefaultWatchInterval     = 500 * time.Millisecond
	DefaultRestartBackoff    = 500 * time.Millisecond
	DefaultMaxRestartBackoff = 30 * time.Second
)

// ErrDown is wrapped by Cluster.Err while a supervised server is down.
var ErrDown = errors.New("embedded PostgreSQL is down")

// supervisor watches the postmaster of a supervised cluster and restarts it
// when it exits. PostgreSQL's postmaster is not our child (pg_ctl starts it
// detached), so it cannot be waited for: it is checked every watch interval.
type supervisor struct {
	cfg    Config // Port is the port the cluster runs on
	cancel context.CancelFunc
	done   chan struct{}
}

// downState is what Err reports while the server is down.
type downState struct {
	since    time.Time
	pid      int
	attempts int
	lastErr  error
}

// superviseConfig fills the supervision's defaults.
func superviseConfig(cfg Config) Config {
	if cfg.WatchInterval <= 0 {
		cfg.WatchInterval = DefaultWatchInterval
	}
	if cfg.RestartBackoff <= 0 {
		cfg.RestartBackoff = DefaultRestartBackoff
	}
	if cfg.MaxRestartBackoff <= 0 {
		cfg.MaxRestartBackoff = DefaultMaxRestartBackoff
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	return cfg
}

// startSupervisor begins watching the running server (Start calls it once
// the server accepts connections).
func (c *Cluster) startSupervisor(cfg Config) {
	cfg = superviseConfig(cfg)
	cfg.Port = c.port // a restart must keep the port: clients hold its URL
	ctx, cancel := context.WithCancel(context.Background())
	s := &supervisor{cfg: cfg, cancel: cancel, done: make(chan struct{})}
	c.super = s
	go c.supervise(ctx, s)
}

// stopSupervisor ends the supervision and waits until a restart in
// progress has ended, so that Stop does not race a restart.
func (c *Cluster) stopSupervisor() {
	if s := c.super; s != nil {
		s.cancel()
		<-s.done
	}
}

func (c *Cluster) supervise(ctx context.Context, s *supervisor) {
	defer close(s.done)
	tick := time.NewTicker(s.cfg.WatchInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		pid := int(c.pid.Load())
		if processRunning(pid) {
			continue
		}
		since := time.Now()
		c.setDown(&downState{since: since, pid: pid})
		c.log.Error("PostgreSQL exited; restarting it on the same data (its crash recovery replays the log)", "pid", pid, "port", c.port)
		backoff := s.cfg.RestartBackoff
		for attempt := 1; ; attempt++ {
			err := c.restart(ctx, s.cfg)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			c.setDown(&downState{since: since, pid: pid, attempts: attempt, lastErr: err})
			c.log.Error("restarting PostgreSQL failed; trying again", "attempt", attempt, "retry_in", backoff, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, s.cfg.MaxRestartBackoff)
		}
		c.restarts.Add(1)
		c.setDown(nil)
		newPid, _ := c.Pid()
		c.log.Warn("PostgreSQL restarted", "pid", newPid, "port", c.port, "down_for", time.Since(since).Round(time.Millisecond))
	}
}

// restart clears what the dead server left (its exiting children, a stale
// postmaster.pid) and starts it again on the same port.
func (c *Cluster) restart(ctx context.Context, cfg Config) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	if err := c.clearLeftovers(ctx); err != nil {
		return err
	}
	c.rotateLog()
	if err := c.startServer(ctx, cfg); err != nil {
		return err
	}
	pid, err := c.Pid()
	if err != nil {
		return err
	}
	if err := c.waitReadyWhileRunning(ctx, pid); err != nil {
		c.stopQuietly()
		return fmt.Errorf("PostgreSQL restarted but does not accept connections on port %d: %w", c.port, err)
	}
	c.pid.Store(int64(pid))
	return nil
}

// waitReadyWhileRunning is waitReady that gives up at once when the
// postmaster exits: a server killed again while it recovers would
// otherwise be waited for until StartTimeout.
func (c *Cluster) waitReadyWhileRunning(ctx context.Context, pid int) error {
	for {
		err := c.ping(ctx)
		if err == nil {
			return nil
		}
		if !processRunning(pid) {
			return fmt.Errorf("postmaster %d exited while starting: %w", pid, err)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Cluster) setDown(d *downState) {
	c.downMu.Lock()
	c.down = d
	c.downMu.Unlock()
}

// Err is nil while the server runs. While a supervised server is down (it
// exited and is being restarted) it returns an error wrapping ErrDown that
// says since when and why the last restart failed; once Stop was called, an
// error saying so.
func (c *Cluster) Err() error {
	c.downMu.Lock()
	d := c.down
	c.downMu.Unlock()
	if d != nil {
		ago := time.Since(d.since).Round(100 * time.Millisecond)
		if d.lastErr != nil {
			return fmt.Errorf("%w: postmaster %d exited %s ago; %d restarts failed, the last: %v", ErrDown, d.pid, ago, d.attempts, d.lastErr)
		}
		return fmt.Errorf("%w: postmaster %d exited %s ago; restarting", ErrDown, d.pid, ago)
	}
	c.mu.Lock()
	stopped := c.stopped
	c.mu.Unlock()
	if stopped {
		return errors.New("embedded PostgreSQL is stopped")
	}
	return nil
}

// Restarts counts the restarts of a supervised server since Start.
func (c *Cluster) Restarts() int { return int(c.restarts.Load()) }
