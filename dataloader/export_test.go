package dataloader

// SetMaxChildren lowers the bound of l's batched children reads, so a test
// can cross it with a few documents.
func SetMaxChildren(l *Loaders, n int) { l.maxChildren = n }
