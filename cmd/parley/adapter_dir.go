package main

import (
	"context"

	"github.com/parley-chat/parley/api"
	"github.com/parley-chat/parley/node"
)

// The directory side of nodeAPI: lookups, name search and key rotation.

func (a *nodeAPI) LookupUser(ctx context.Context, userID string) (api.DirectoryEntry, error) {
	id, err := node.ParseUserID("user_id", userID)
	if err != nil {
		return api.DirectoryEntry{}, apiError(err)
	}
	e, err := a.n.LookupUser(ctx, id)
	if err != nil {
		return api.DirectoryEntry{}, apiError(err)
	}
	out := api.DirectoryEntry{
		UserID:      e.UserID.String(),
		Name:        e.Name,
		Fingerprint: e.Fingerprint,
		Devices:     make([]string, len(e.Devices)),
		Seq:         e.Seq,
		ExpiresAt:   e.ExpiresAt,
	}
	for i, d := range e.Devices {
		out.Devices[i] = d.String()
	}
	return out, nil
}

func (a *nodeAPI) SearchDirectory(ctx context.Context, name string) ([]api.SearchResult, error) {
	rs, err := a.n.SearchName(ctx, name)
	if err != nil {
		return nil, apiError(err)
	}
	out := make([]api.SearchResult, len(rs))
	for i, r := range rs {
		out[i] = api.SearchResult{UserID: r.UserID.String(), Name: r.Name, Fingerprint: r.Fingerprint, Friend: r.Friend}
	}
	return out, nil
}

func (a *nodeAPI) RotateKey(ctx context.Context) (api.Me, error) {
	if err := a.n.RotateKey(ctx); err != nil {
		return api.Me{}, apiError(err)
	}
	return a.Me(ctx)
}
