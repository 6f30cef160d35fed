package main

import (
	"flag"
	"fmt"
	"regexp"

	"github.com/tidemark/tidemark/db"
)

// regionName is what TIDEMARK_REGION may hold: a cloud or CockroachDB
// region name (us-east1, ap-southeast-2, europe-west1). It is bounded
// because it becomes a metric label and appears in /readyz.
var regionName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// bindRegion registers TIDEMARK_REGION: the region this instance runs in
// (docs/deploy.md). It changes no behaviour; it names the instance in its
// start log line, in /readyz and in tidemark_instance_info, so a client's
// latency can be read against where it was served from.
func bindRegion(fs *flag.FlagSet, region *string) {
	fs.StringVar(region, "region", env("TIDEMARK_REGION", ""), "the region this instance runs in, e.g. europe-west1; shown in the start log line, /readyz and tidemark_instance_info; empty: not set (TIDEMARK_REGION)")
}

func validateRegion(region string) []error {
	if region != "" && !regionName.MatchString(region) {
		return []error{fmt.Errorf("TIDEMARK_REGION=%q must be a region name: letters, digits, '.', '_' or '-', at most 63", region)}
	}
	return nil
}

// PlacementConfig is where a multi-region CockroachDB keeps its data, as
// `tidemark migrate` applies it and `tidemark tenant` checks home regions
// against it (docs/deploy.md, "Tenant homing").
type PlacementConfig struct {
	Regions      string // TIDEMARK_REGIONS: comma-separated, the first is the primary; empty: not multi-region
	SurvivalGoal string // TIDEMARK_SURVIVAL_GOAL: zone or region; empty: zone
}

// bindPlacement registers TIDEMARK_REGIONS and TIDEMARK_SURVIVAL_GOAL.
func bindPlacement(fs *flag.FlagSet, p *PlacementConfig) {
	fs.StringVar(&p.Regions, "regions", env("TIDEMARK_REGIONS", ""), "comma-separated CockroachDB regions, the primary first, e.g. us-east1,europe-west1; migrate makes the database multi-region with them (skipped on PostgreSQL); empty: not multi-region (TIDEMARK_REGIONS)")
	fs.StringVar(&p.SurvivalGoal, "survival-goal", env("TIDEMARK_SURVIVAL_GOAL", ""), "what a multi-region database survives: zone or region (needs 3 regions); empty: zone (TIDEMARK_SURVIVAL_GOAL)")
}

// Placement parses the settings; its error names the variable to fix.
func (p PlacementConfig) Placement() (db.Placement, error) {
	placement, err := db.ParsePlacement(p.Regions, p.SurvivalGoal)
	if err != nil {
		return db.Placement{}, fmt.Errorf("TIDEMARK_REGIONS=%q TIDEMARK_SURVIVAL_GOAL=%q: %w", p.Regions, p.SurvivalGoal, err)
	}
	return placement, nil
}

func (p PlacementConfig) validate() []error {
	if _, err := p.Placement(); err != nil {
		return []error{err}
	}
	return nil
}
