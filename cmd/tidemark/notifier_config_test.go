package main

import (
	"flag"
	"strings"
	"testing"

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
	if err == nil || !strings.Contains(err.Error(), "TIDEMARK_NOTIFIER") {
		t.Errorf("an unknown notifier: err = %v, want one mentioning TIDEMARK_NOTIFIER", err)
	}
}
