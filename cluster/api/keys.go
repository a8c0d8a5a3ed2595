package api

// Listing keys is paged: a page holds at most MaxKeysPage keys, in name
// order, after the name the caller gives (none: from the first). Over
// REST, GET /v1/keys?after=NAME&limit=N answers the page as a JSON array
// and, when keys remain after it, the name to continue after in the
// NextPageHeader response header.
const (
	MaxKeysPage    = 1000
	NextPageHeader = "Keyquorum-Next-After"
)
