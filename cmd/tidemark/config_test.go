package main

import (
	"flag"
	"os"
	"strings"
	"testing"
)

// A Config built in code (as tests and Main's users do) gets the same
// settings as `tidemark serve` with no flags: both read one defaults value.
func TestConfigInCodeGetsTheFlagsDefaults(t *testing.T) {
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "TIDEMARK_") && !strings.HasPrefix(kv, "TIDEMARK_TEST_") {
			t.Skipf("%s is set, so the flags' defaults are not the defaults", strings.SplitN(kv, "=", 2)[0])
		}
	}
	var fromFlags Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	if err := bindConfig(fs, &fromFlags); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if inCode := (Config{}).withDefaults(); inCode != fromFlags {
		t.Errorf("Config{}.withDefaults() = %+v\nthe flags' defaults  = %+v", inCode, fromFlags)
	}
	if fromFlags != defaults {
		t.Errorf("the flags' defaults = %+v\nwant defaults        = %+v", fromFlags, defaults)
	}
}
