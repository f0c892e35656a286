package agent

import (
	"context"

	"github.com/scim-agent/scim-agent/scimclient"
)

// scanPageSize is the page a lookup without filters reads at a time.
const scanPageSize = 100

// lister reads one page of a listing (GET /Users or /Groups without a
// filter) from the 1-based startIndex.
type lister func(ctx context.Context, startIndex, count int) (scimclient.ListResponse, error)

// scan is the lookup on a server that cannot filter (scim.capabilities
// filter false, or a ServiceProviderConfig saying so): it reads every
// resource, page by page, and returns the best candidate by rank (rank
// 1 is best; 0 is no candidate), stopping at the first of rank 1. It
// costs one GET per page, so only a create answered 409 pays it; a
// server that filters is always asked with a filter instead.
func scan(ctx context.Context, list lister, rank func(scimclient.Resource) int) (scimclient.Resource, error) {
	var best scimclient.Resource
	bestRank := 0
	for start := 1; ; {
		page, err := list(ctx, start, scanPageSize)
		if err != nil {
			return nil, err
		}
		for _, res := range page.Resources {
			switch r := rank(res); {
			case r == 1:
				return res, nil
			case r > 0 && (bestRank == 0 || r < bestRank):
				best, bestRank = res, r
			}
		}
		start += len(page.Resources)
		if len(page.Resources) == 0 || start > page.TotalResults {
			return best, nil
		}
	}
}
