// Package searchattr registers custom search attributes on a Temporal
// namespace, for acu setup and the embedded dev server alike.
package searchattr

import (
	"context"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
)

// Missing returns the attributes of want the namespace does not have yet.
// An attribute that exists with another type is an error: it cannot be
// changed in place.
func Missing(ctx context.Context, c client.Client, namespace string, want map[string]enumspb.IndexedValueType) (map[string]enumspb.IndexedValueType, error) {
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return nil, fmt.Errorf("listing search attributes of %q: %w", namespace, err)
	}
	have := resp.GetCustomAttributes()
	missing := map[string]enumspb.IndexedValueType{}
	for name, typ := range want {
		got, ok := have[name]
		switch {
		case !ok:
			missing[name] = typ
		case got != typ:
			return nil, fmt.Errorf("search attribute %s on %q has type %s, want %s", name, namespace, got, typ)
		}
	}
	return missing, nil
}

// Ensure adds the attributes of want the namespace lacks and returns how
// many it added.
func Ensure(ctx context.Context, c client.Client, namespace string, want map[string]enumspb.IndexedValueType) (int, error) {
	missing, err := Missing(ctx, c, namespace, want)
	if err != nil || len(missing) == 0 {
		return 0, err
	}
	if _, err := c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace: namespace, SearchAttributes: missing,
	}); err != nil {
		return 0, fmt.Errorf("adding search attributes to %q: %w", namespace, err)
	}
	return len(missing), nil
}
