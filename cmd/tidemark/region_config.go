package main

import (
	"flag"
	"fmt"
	"regexp"
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
