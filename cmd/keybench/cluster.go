package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/keyquorum/keyquorum/client"
)

// connect loads the admin credentials deploy/local/cluster wrote into dir
// and pins the cluster key through node 1 of the cluster on base; addr
// is node I's API address.
func connect(ctx context.Context, dir string, base int) (c *client.Client, creds *client.Credentials, addr func(int) string, err error) {
	creds, err = client.LoadCredentials(filepath.Join(dir, "credentials/ca.pem"), filepath.Join(dir, "credentials/operator.pem"),
		filepath.Join(dir, "credentials/operator-key.pem"), "", "")
	if err != nil {
		return nil, nil, nil, err
	}
	addr = func(i int) string { return fmt.Sprintf("127.0.0.1:%d", base+10*i) }
	if c, err = client.NewClient(addr(1), creds); err != nil {
		return nil, nil, nil, err
	}
	if _, err := c.Pin(ctx); err != nil {
		return nil, nil, nil, err
	}
	return c, creds, addr, nil
}
