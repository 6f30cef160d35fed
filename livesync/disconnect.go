package livesync

import "context"

// Disconnector closes the connection a subscription runs on, telling the
// client to reconnect and resync from its checkpoint. Ending a subscription
// with `complete` instead would make clients such as RxDB stop live sync
// for good, so the hub never does that.
type Disconnector func(reason string)

type disconnectorKey struct{}

// WithDisconnector lets the transport say how to close the connection of
// subscriptions started with ctx.
func WithDisconnector(ctx context.Context, d Disconnector) context.Context {
	return context.WithValue(ctx, disconnectorKey{}, d)
}

func disconnectorFrom(ctx context.Context) Disconnector {
	d, _ := ctx.Value(disconnectorKey{}).(Disconnector)
	return d
}
