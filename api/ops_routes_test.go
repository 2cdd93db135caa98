package api

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestBackupRoute(t *testing.T) {
	aud := &fakeAuditor{}
	ts := startServer(t, newFakeNode(StateLocked), Options{Auditor: aud})
	tok := ts.login()

	// A wrong passphrase is 403 and writes nothing but the error.
	a := ts.do(call{method: "POST", path: "/api/v1/backup", token: tok, body: `{"passphrase":"not the passphrase"}`})
	a.expect(t, http.StatusForbidden, CodeForbidden)
	if strings.Contains(string(a.body), "fake backup") {
		t.Fatal("a refused backup wrote the backup")
	}
	// Without a token: 401.
	ts.do(call{method: "POST", path: "/api/v1/backup", body: `{"passphrase":"` + testPassphrase + `"}`}).expect(t, http.StatusUnauthorized, CodeUnauthorized)

	a = ts.do(call{method: "POST", path: "/api/v1/backup", token: tok, body: `{"passphrase":"` + testPassphrase + `"}`})
	a.expect(t, http.StatusOK, "")
	if string(a.body) != fakeBackup || a.Header.Get("Content-Type") != "application/octet-stream" ||
		!strings.HasPrefix(a.Header.Get("Content-Disposition"), `attachment; filename="parley-backup-`) {
		t.Fatalf("backup answer %q, headers %v", a.body, a.Header)
	}
	want := []string{"login", "token_issued", "backup_refused", "backup_made"}
	if got := aud.got(); !slices.Equal(got, want) {
		t.Fatalf("audit events %v, want %v", got, want)
	}
}

// TestAuditedRoutes: logins, failed logins, logouts and friend changes
// each leave their event, with the user ID where there is one and
// never the passphrase.
func TestAuditedRoutes(t *testing.T) {
	aud := &fakeAuditor{}
	node := newFakeNode(StateLocked)
	node.friends = []Friend{{UserID: "bob-id", Name: "bob", Status: "accepted"}}
	ts := startServer(t, node, Options{Auditor: aud})
	ts.do(call{method: "POST", path: "/api/v1/login", body: `{"passphrase":"wrong one!!"}`}).expect(t, http.StatusUnauthorized, CodeBadPassphrase)
	tok := ts.login()
	ts.do(call{method: "POST", path: "/api/v1/friends/bob-id/verify", token: tok}).expect(t, http.StatusNoContent, "")
	ts.do(call{method: "POST", path: "/api/v1/friends/bob-id/block", token: tok}).expect(t, http.StatusOK, "")
	ts.do(call{method: "DELETE", path: "/api/v1/friends/bob-id", token: tok}).expect(t, http.StatusNoContent, "")
	ts.do(call{method: "POST", path: "/api/v1/logout", token: tok}).expect(t, http.StatusNoContent, "")
	want := []string{"login_failed", "login", "token_issued", "friend_verified", "friend_blocked", "friend_removed", "token_revoked"}
	if got := aud.got(); !slices.Equal(got, want) {
		t.Fatalf("audit events %v, want %v", got, want)
	}
	for i, f := range aud.fields {
		for _, v := range f {
			if strings.Contains(v, "wrong one") || strings.Contains(v, testPassphrase) {
				t.Errorf("event %s carries a passphrase", aud.events[i])
			}
		}
		if strings.HasPrefix(aud.events[i], "friend_") && f["user_id"] != "bob-id" {
			t.Errorf("event %s without the user ID: %v", aud.events[i], f)
		}
	}
}

func TestAuditRoute(t *testing.T) {
	ts := startServer(t, newFakeNode(StateLocked), Options{})
	tok := ts.login()
	a := ts.do(call{method: "GET", path: "/api/v1/audit?limit=5", token: tok})
	a.expect(t, http.StatusOK, "")
	var out struct{ Events []AuditEvent }
	a.decode(t, &out)
	if len(out.Events) != 1 || out.Events[0].Event != "login" {
		t.Fatalf("audit answer %s", a.body)
	}
	ts.do(call{method: "GET", path: "/api/v1/audit?limit=0", token: tok}).expect(t, http.StatusBadRequest, CodeBadRequest)
	ts.do(call{method: "GET", path: "/api/v1/audit"}).expect(t, http.StatusUnauthorized, CodeUnauthorized)
}
