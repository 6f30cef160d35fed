package main

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/wiring"
)

func TestNotifierComesFromTheEnvironmentAndIsChecked(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	if err := bindConfig(fs, &c); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if c.Notifier != wiring.NotifierChanges {
		t.Fatalf("Notifier = %q with no setting, want %q", c.Notifier, wiring.NotifierChanges)
	}
	if got := (Config{}).withDefaults().Notifier; got != wiring.NotifierChanges {
		t.Errorf("a Config built in code has notifier %q, want %q", got, wiring.NotifierChanges)
	}

	t.Setenv("TIDEMARK_NOTIFIER", "heads")
	c = Config{}
	fs = flag.NewFlagSet("test", flag.ContinueOnError)
	if err := bindConfig(fs, &c); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if c.Notifier != wiring.NotifierHeads {
		t.Fatalf("Notifier = %q from TIDEMARK_NOTIFIER=heads", c.Notifier)
	}
	if err := c.withDefaults().validate(); err != nil {
		t.Errorf("heads: %v", err)
	}

	err := Config{Notifier: "listen"}.withDefaults().validate()
	if err == nil || !strings.Contains(err.Error(), "TIDEMARK_NOTIFIER ") {
		t.Errorf("an unknown notifier: err = %v, want one mentioning TIDEMARK_NOTIFIER", err)
	}
}

func TestNotifierOverlapComesFromTheEnvironmentAndIsChecked(t *testing.T) {
	if got := (Config{}).withDefaults().NotifierOverlap; got != wiring.DefaultNotifierOverlap {
		t.Errorf("a Config built in code has overlap %s, want %s", got, wiring.DefaultNotifierOverlap)
	}
	t.Setenv("TIDEMARK_NOTIFIER_OVERLAP", "500ms")
	var c Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	if err := bindConfig(fs, &c); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if c.NotifierOverlap != 500*time.Millisecond {
		t.Fatalf("NotifierOverlap = %s from TIDEMARK_NOTIFIER_OVERLAP=500ms", c.NotifierOverlap)
	}
	if err := c.withDefaults().validate(); err != nil {
		t.Errorf("500ms: %v", err)
	}
	for _, overlap := range []time.Duration{time.Millisecond, time.Hour} {
		err := Config{NotifierOverlap: overlap}.withDefaults().validate()
		if err == nil || !strings.Contains(err.Error(), "TIDEMARK_NOTIFIER_OVERLAP") {
			t.Errorf("%s: err = %v, want one mentioning TIDEMARK_NOTIFIER_OVERLAP", overlap, err)
		}
	}
}
