package main

import (
	"flag"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/syncengine"
)

func TestPushLimitsComeFromTheEnvironmentAndAreChecked(t *testing.T) {
	t.Setenv("TIDEMARK_MAX_ROW_BYTES", "4096")
	t.Setenv("TIDEMARK_MAX_PUSH_BYTES", "65536")
	var c Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	if err := bindConfig(fs, &c); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if want := (syncengine.PushLimits{MaxRowBytes: 4096, MaxPushBytes: 65536}); c.PushLimits != want {
		t.Fatalf("PushLimits = %+v, want %+v", c.PushLimits, want)
	}

	for _, tt := range []struct {
		limits  syncengine.PushLimits
		mention string
	}{
		{syncengine.PushLimits{MaxRowBytes: 100, MaxPushBytes: 65536}, "TIDEMARK_MAX_ROW_BYTES"},
		{syncengine.PushLimits{MaxRowBytes: 4096, MaxPushBytes: 2048}, "TIDEMARK_MAX_PUSH_BYTES"},
	} {
		err := Config{PushLimits: tt.limits}.withDefaults().validate()
		if err == nil || !strings.Contains(err.Error(), tt.mention) {
			t.Errorf("%+v: err = %v, want one mentioning %s", tt.limits, err, tt.mention)
		}
	}
	if err := (Config{}).withDefaults().validate(); err != nil {
		t.Errorf("the defaults: %v", err)
	}
}
