package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/db/dbtest"
)

func TestRegionSettingIsChecked(t *testing.T) {
	for _, tc := range []struct {
		region string
		ok     bool
	}{
		{"", true},
		{"europe-west1", true},
		{"ap-southeast-2", true},
		{"us_east.1", true},
		{"-starts-with-a-dash", false},
		{"has space", false},
		{`quote"d`, false},
		{strings.Repeat("r", 64), false},
	} {
		errs := validateRegion(tc.region)
		if tc.ok != (len(errs) == 0) {
			t.Errorf("region %q: errors %v, want accepted %t", tc.region, errs, tc.ok)
		}
		if !tc.ok && len(errs) == 1 && !strings.Contains(errs[0].Error(), "TIDEMARK_REGION") {
			t.Errorf("region %q: %v does not name TIDEMARK_REGION", tc.region, errs[0])
		}
	}
}

func TestRegionIsReadFromTheEnvironment(t *testing.T) {
	t.Setenv("TIDEMARK_REGION", "ap-southeast-2")
	if got := defaultConfig(t).Region; got != "ap-southeast-2" {
		t.Errorf("Region = %q, want TIDEMARK_REGION's ap-southeast-2", got)
	}
}

// An instance with TIDEMARK_REGION names it in its start line, in
// /readyz's body and in tidemark_instance_info; one without does not
// (the control: the checks can fail).
func TestRegionIsInTheStartLineReadyzAndMetrics(t *testing.T) {
	for _, region := range []string{"ap-southeast-2", ""} {
		t.Run("region "+region, func(t *testing.T) {
			cfg := defaultConfig(t)
			cfg.DatabaseURL = dbtest.URL(t)
			cfg.JWTSecret = testSecret
			cfg.Metrics = MetricsConfig{Switch: "on"}
			cfg.Region = region
			log, buf := testLogger(t)
			m := &Main{Config: cfg, Log: log}
			if err := m.Run(context.Background()); err != nil {
				t.Fatalf("Run: %v", err)
			}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				m.Close(ctx)
			})

			var start string
			for _, line := range strings.Split(buf.String(), "\n") {
				if strings.Contains(line, "tidemark is serving") {
					start = line
				}
			}
			if want := "region=" + region + " "; region != "" && !strings.Contains(start+" ", want) {
				t.Errorf("start line %q lacks %q", start, want)
			}

			status, _, body := get(t, m.url()+"/readyz")
			var ready map[string]string
			if err := json.Unmarshal(body, &ready); status != http.StatusOK || err != nil {
				t.Fatalf("/readyz = %d %s", status, body)
			}
			if got, ok := ready["region"]; got != region || ok != (region != "") {
				t.Errorf("/readyz body %s: region %q (present %t), want %q", body, got, ok, region)
			}

			_, _, metrics := get(t, m.url()+"/metrics")
			if want := `tidemark_instance_info{region="` + region + `"} 1`; !strings.Contains(string(metrics), want) {
				t.Errorf("/metrics lacks %s", want)
			}
			if n := strings.Count(string(metrics), "\ntidemark_instance_info{"); n != 1 {
				t.Errorf("/metrics has %d tidemark_instance_info series, want 1", n)
			}
		})
	}
}
