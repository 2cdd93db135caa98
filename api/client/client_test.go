package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/parley-chat/parley/api"
)

func TestNewRefusesBadBases(t *testing.T) {
	for _, base := range []string{"", "127.0.0.1:7733", "ftp://127.0.0.1", "http://127.0.0.1:7733/api", "http://"} {
		if _, err := New(base, nil); err == nil {
			t.Errorf("New(%q) took it", base)
		}
	}
}

// TestErrorAnswers: an error answer becomes an *api.Error with its code,
// message and Retry-After; one without a JSON error is internal.
func TestErrorAnswers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/login":
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"error":{"code":"throttled","message":"too many wrong passphrases: try again in 3 s"}}`))
		default:
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte("<html>proxy</html>"))
		}
	}))
	defer srv.Close()
	c, err := New(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = c.Unlock(ctx, []byte("x"))
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeThrottled || ae.RetryAfter != 3*time.Second || ae.Message == "" {
		t.Errorf("throttled login: %#v", err)
	}
	if c.Token() != "" {
		t.Error("a refused login left a token")
	}
	_, err = c.Me(ctx)
	if !errors.As(err, &ae) || ae.Code != api.CodeInternal {
		t.Errorf("a non-JSON error answer: %#v", err)
	}
	// Without a token, Subscribe gives a closed stream.
	ch, cancel := c.Subscribe(ctx)
	defer cancel()
	if _, open := <-ch; open {
		t.Error("Subscribe without a token gave events")
	}
}
