package api

import (
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits of request values.
const (
	minPassphraseChars = 10
	maxTextBytes       = 32 << 10 // a message's text, in bytes of UTF-8
	defaultPageSize    = 50
	maxPageSize        = 200
)

// authKind says how a route authenticates.
type authKind int

const (
	authBearer authKind = iota // Authorization: Bearer <token>, checked before the handler
	authNone                   // public
	authSocket                 // the WebSocket: header on the upgrade or a first message
)

// bodyKind says what request body a route takes.
type bodyKind int

const (
	bodyNone     bodyKind = iota // GET routes: the body is not read
	bodyJSON                     // a JSON object; the handler decodes it
	bodyEmpty                    // a mutating route without a body: it must be empty
	bodyOptional                 // a JSON object, or no body at all (verify)
)

// route is one row of the route table: an http.ServeMux pattern (method
// and path, with {name} wildcards for one path segment each), how it
// authenticates, what body it takes, its handler, and what the OpenAPI
// document says of it (api/internal/openapigen reads the table through
// Routes).
type route struct {
	method  string
	pattern string
	auth    authKind
	body    bodyKind
	handle  func(*request) error

	op      string // operationId
	summary string
	query   any // a struct whose fields tagged query are the query's parameters
	in      any // the request body's type
	out     any // the answer's type; nil answers 204 without a body
	status  int // the status of a success
}

// request is what a route handler gets.
type request struct {
	w     http.ResponseWriter
	r     *http.Request
	h     *handler
	login *login // nil on public routes
}

// param returns the path parameter name, unescaped.
func (q *request) param(name string) string { return q.r.PathValue(name) }

// routeTable is the API. The OpenAPI document is generated from it (make
// api), and a test holds the served document to the table.
func (s *Server) routeTable() []route {
	return append([]route{
		{method: "GET", pattern: "/api/v1/health", auth: authNone, handle: s.health,
			op: "health", summary: "Liveness and the node's state", out: Health{}, status: 200},
		{method: "GET", pattern: "/api/v1/openapi.json", auth: authNone, handle: s.openAPI,
			op: "openapi", summary: "This document", out: map[string]any{}, status: 200},
		{method: "POST", pattern: "/api/v1/register", auth: authNone, body: bodyJSON, handle: s.register,
			op: "register", summary: "Create the identity (state new) and log in", in: RegisterRequest{}, out: RegisterResponse{}, status: 201},
		{method: "POST", pattern: "/api/v1/login", auth: authNone, body: bodyJSON, handle: s.login,
			op: "login", summary: "Unlock the node with the passphrase and get a token", in: LoginRequest{}, out: LoginResponse{}, status: 200},
		{method: "POST", pattern: "/api/v1/logout", body: bodyEmpty, handle: s.logout,
			op: "logout", summary: "End this token", status: 204},
		{method: "GET", pattern: "/api/v1/me", handle: s.me,
			op: "me", summary: "The node's own user", out: Me{}, status: 200},
		{method: "GET", pattern: "/api/v1/friends", handle: s.friends,
			op: "friends", summary: "The friend list", out: FriendList{}, status: 200},
		{method: "POST", pattern: "/api/v1/friends", body: bodyJSON, handle: s.addFriend,
			op: "addFriend", summary: "Add a friend by invite link or user ID, or accept their request", in: AddFriendRequest{}, out: Friend{}, status: 201},
		{method: "DELETE", pattern: "/api/v1/friends/{user_id}", body: bodyEmpty, handle: s.removeFriend,
			op: "removeFriend", summary: "Remove a friend", status: 204},
		{method: "POST", pattern: "/api/v1/friends/{user_id}/verify", body: bodyOptional, handle: s.verifyFriend,
			op: "verifyFriend", summary: "Mark the friend's key verified (and accept a changed key)", in: VerifyFriendRequest{}, status: 204},
		{method: "POST", pattern: "/api/v1/friends/{user_id}/block", body: bodyEmpty, handle: s.blockFriend,
			op: "blockFriend", summary: "Block a user", out: Friend{}, status: 200},
		{method: "POST", pattern: "/api/v1/send_message", body: bodyJSON, handle: s.sendMessage,
			op: "sendMessage", summary: "Send a message to a friend", in: SendMessageRequest{}, out: SendMessageResponse{}, status: 202},
		{method: "GET", pattern: "/api/v1/get_messages", handle: s.getMessages,
			op: "getMessages", summary: "A page of a conversation, newest first", query: MessagesQuery{}, out: MessagesPage{}, status: 200},
		{method: "GET", pattern: "/api/v1/conversations", handle: s.conversations,
			op: "conversations", summary: "The conversations, newest first", out: ConversationList{}, status: 200},
		{method: "POST", pattern: "/api/v1/read", body: bodyJSON, handle: s.markRead,
			op: "markRead", summary: "Mark a conversation read and send a read receipt", in: MarkReadRequest{}, status: 204},
		{method: "POST", pattern: "/api/v1/messages/{msg_id}/retry", body: bodyEmpty, handle: s.retryMessage,
			op: "retryMessage", summary: "Send a failed outgoing message again, at the end of its friend's queue", out: SendMessageResponse{}, status: 202},
		{method: "DELETE", pattern: "/api/v1/messages/{msg_id}", body: bodyEmpty, handle: s.deleteMessage,
			op: "deleteMessage", summary: "Delete a message on this node only (a queued one is withdrawn)", status: 204},
		{method: "GET", pattern: "/api/v1/node", handle: s.nodeInfo,
			op: "nodeInfo", summary: "The libp2p side of the node", out: NodeInfo{}, status: 200},
		{method: "POST", pattern: "/api/v1/peers/connect", body: bodyJSON, handle: s.connect,
			op: "connect", summary: "Connect to a peer by multiaddr", in: ConnectRequest{}, status: 204},
		{method: "GET", pattern: "/api/v1/directory/search", handle: s.searchDirectory,
			op: "searchDirectory", summary: "The users who claim a display name", query: SearchQuery{}, out: SearchResults{}, status: 200},
		{method: "GET", pattern: "/api/v1/directory/{user_id}", handle: s.lookupUser,
			op: "lookupUser", summary: "A user's verified directory record", out: DirectoryEntry{}, status: 200},
		{method: "POST", pattern: "/api/v1/keys/rotate", body: bodyEmpty, handle: s.rotateKey,
			op: "rotateKey", summary: "Replace the identity key by one signed by the old key", out: Me{}, status: 200},
		{method: "GET", pattern: "/api/v1/events", auth: authSocket, handle: s.events,
			op: "events", summary: "The WebSocket of live events", out: Event{}, status: 101},
		{method: "POST", pattern: "/api/v1/backup", body: bodyJSON, handle: s.backup,
			op: "backup", summary: "Download an encrypted backup of the whole node (age, under the passphrase)", in: BackupRequest{}, out: Binary{}, status: 200},
		{method: "GET", pattern: "/api/v1/audit", handle: s.auditLog,
			op: "audit", summary: "The newest security events of the audit log, newest first", query: AuditQuery{}, out: AuditLog{}, status: 200},
	}, s.groupRoutes()...)
}

// apiMethods are the methods of the route table, in the order an Allow
// header lists them.
var apiMethods = []string{http.MethodDelete, http.MethodGet, http.MethodPost}

// newMux registers the route table on an http.ServeMux.
func (h *handler) newMux() *http.ServeMux {
	mux := http.NewServeMux()
	for i := range h.s.routes {
		rt := &h.s.routes[i]
		mux.HandleFunc(rt.method+" "+rt.pattern, func(w http.ResponseWriter, r *http.Request) { h.serveRoute(rt, w, r) })
	}
	return mux
}

// serveAPI routes a request under /api: through the ServeMux when a route
// matches, else 405 with Allow for a known path and another method (HEAD
// included: the API has no HEAD routes, though the ServeMux would let it
// into GET ones), else 404 (a path that is not in its clean form too,
// rather than the ServeMux's redirect). Errors are JSON, as everywhere.
func (h *handler) serveAPI(w http.ResponseWriter, r *http.Request) {
	s := h.s
	canonical := path.Clean(r.URL.Path) == r.URL.Path
	if canonical && r.Method != http.MethodHead {
		if _, pattern := h.mux.Handler(r); pattern != "" {
			h.mux.ServeHTTP(w, r)
			return
		}
	}
	var allowed []string
	for _, m := range apiMethods {
		probe := r.WithContext(r.Context())
		probe.Method = m
		if _, pattern := h.mux.Handler(probe); canonical && pattern != "" {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) > 0 {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		s.writeError(w, r, apiError(CodeMethodNotAllowed, "method %s not allowed here", r.Method))
		return
	}
	s.writeError(w, r, apiError(CodeNotFound, "no such API route"))
}

// serveRoute runs a matched route: its path parameters are one segment
// each (an escaped "/" in one is no route), then authentication, the body
// rule of the route, and the handler.
func (h *handler) serveRoute(rt *route, w http.ResponseWriter, r *http.Request) {
	s := h.s
	for _, seg := range strings.Split(rt.pattern, "/") {
		if name, ok := strings.CutPrefix(seg, "{"); ok && strings.Contains(r.PathValue(strings.TrimSuffix(name, "}")), "/") {
			s.writeError(w, r, apiError(CodeNotFound, "no such API route"))
			return
		}
	}
	req := &request{w: w, r: r, h: h}
	if rt.auth == authBearer {
		lg, err := s.authenticate(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		req.login = lg
	}
	if rt.body == bodyEmpty {
		if err := requireEmptyBody(w, r); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	err := rt.handle(req)
	s.audit(rt, req, err)
	if err != nil {
		s.writeError(w, r, err)
	}
}

// health answers without auth, in every state.
func (s *Server) health(q *request) error {
	name, userID := s.node.Owner()
	writeJSON(q.w, http.StatusOK, Health{Status: "ok", State: s.node.State(), Name: name, UserID: userID})
	return nil
}

// decodePassphrase decodes the body of register or login into req and
// returns the passphrase, pass (a field of req), as bytes the caller must
// wipe.
func decodePassphrase(q *request, req any, pass *Secret) ([]byte, error) {
	raw, err := decodeBody(q.w, q.r, req)
	defer wipe(raw)
	defer wipe(*pass)
	if err != nil {
		return nil, err
	}
	if *pass == nil {
		return nil, apiError(CodeBadRequest, "passphrase is required")
	}
	b, err := unquoteBytes(*pass)
	if err != nil {
		return nil, apiError(CodeBadRequest, "passphrase must be a string")
	}
	return b, nil
}

func (s *Server) register(q *request) error {
	var req RegisterRequest
	pass, err := decodePassphrase(q, &req, &req.Passphrase)
	defer wipe(pass)
	name := req.Name
	if err != nil {
		return err
	}
	if s.node.State() != StateNew {
		return apiError(CodeConflict, "an identity already exists on this node")
	}
	if strings.TrimSpace(name) == "" {
		return apiError(CodeBadRequest, "name is required")
	}
	if utf8.RuneCount(pass) < minPassphraseChars {
		return apiError(CodeBadRequest, "passphrase must be at least %d characters", minPassphraseChars)
	}
	me, err := s.node.Register(q.r.Context(), name, pass)
	wipe(pass)
	if err != nil {
		return err
	}
	token, err := s.tokens.issue()
	if err != nil {
		return err
	}
	writeJSON(q.w, http.StatusCreated, RegisterResponse{UserID: me.UserID, PeerID: me.PeerID, Token: token})
	return nil
}

func (s *Server) login(q *request) error {
	var req LoginRequest
	pass, err := decodePassphrase(q, &req, &req.Passphrase)
	defer wipe(pass)
	if err != nil {
		return err
	}
	if s.node.State() == StateNew {
		return apiError(CodeWrongState, "no identity on this node yet: register first")
	}
	if len(pass) == 0 {
		return apiError(CodeBadRequest, "passphrase is required")
	}
	me, err := s.node.Unlock(q.r.Context(), pass)
	wipe(pass)
	if err != nil {
		return err
	}
	token, err := s.tokens.issue()
	if err != nil {
		return err
	}
	writeJSON(q.w, http.StatusOK, LoginResponse{Token: token, UserID: me.UserID})
	return nil
}

func (s *Server) logout(q *request) error {
	s.tokens.revoke(q.login)
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) me(q *request) error {
	me, err := s.node.Me(q.r.Context())
	if err != nil {
		return err
	}
	me.Addrs = nonNil(me.Addrs)
	writeJSON(q.w, http.StatusOK, me)
	return nil
}

func (s *Server) friends(q *request) error {
	fs, err := s.node.Friends(q.r.Context())
	if err != nil {
		return err
	}
	writeJSON(q.w, http.StatusOK, FriendList{Friends: nonNil(fs)})
	return nil
}

func (s *Server) addFriend(q *request) error {
	var req AddFriendRequest
	if _, err := decodeBody(q.w, q.r, &req); err != nil {
		return err
	}
	var (
		f   Friend
		err error
	)
	switch {
	case req.Invite != "" && req.UserID == "":
		f, err = s.node.AddFriend(q.r.Context(), req.Invite)
	case req.UserID != "" && req.Invite == "":
		f, err = s.node.AddFriendByID(q.r.Context(), req.UserID)
	default:
		return apiError(CodeBadRequest, "give exactly one of invite and user_id")
	}
	if err != nil {
		return err
	}
	writeJSON(q.w, http.StatusCreated, f)
	return nil
}

func (s *Server) removeFriend(q *request) error {
	if err := s.node.RemoveFriend(q.r.Context(), q.param("user_id")); err != nil {
		return err
	}
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}

// verifyFriend takes {"safety_number": "..."}, the number the user
// compared, or (older clients) no body at all.
func (s *Server) verifyFriend(q *request) error {
	var req VerifyFriendRequest
	if q.r.ContentLength == 0 {
		if err := requireEmptyBody(q.w, q.r); err != nil {
			return err
		}
	} else if _, err := decodeBody(q.w, q.r, &req); err != nil {
		return err
	}
	var number []string
	if req.SafetyNumber != "" {
		number = []string{req.SafetyNumber}
	}
	if err := s.node.VerifyFriend(q.r.Context(), q.param("user_id"), number...); err != nil {
		return err
	}
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) blockFriend(q *request) error {
	f, err := s.node.BlockFriend(q.r.Context(), q.param("user_id"))
	if err != nil {
		return err
	}
	writeJSON(q.w, http.StatusOK, f)
	return nil
}

func (s *Server) sendMessage(q *request) error {
	// decodeBody has checked that the body is valid UTF-8 without lone
	// surrogate escapes, so Text is exactly what the client sent.
	var req SendMessageRequest
	if _, err := decodeBody(q.w, q.r, &req); err != nil {
		return err
	}
	switch {
	case req.To == "":
		return apiError(CodeBadRequest, "to is required")
	case strings.TrimSpace(req.Text) == "":
		return apiError(CodeEmptyText, "text is empty or only white space")
	case len(req.Text) > maxTextBytes:
		return apiError(CodeTooLarge, "text is longer than %d bytes", maxTextBytes)
	case !utf8.ValidString(req.Text):
		return apiError(CodeBadRequest, "text is not valid UTF-8")
	}
	m, err := s.node.Send(q.r.Context(), req.To, req.Text)
	if err != nil {
		return err
	}
	writeJSON(q.w, http.StatusAccepted, SendMessageResponse{ID: m.ID, Status: m.Status})
	return nil
}

func (s *Server) getMessages(q *request) error {
	query, err := url.ParseQuery(q.r.URL.RawQuery)
	if err != nil {
		return apiError(CodeBadRequest, "malformed query string")
	}
	with := query.Get("with")
	if with == "" {
		return apiError(CodeBadRequest, "with is required")
	}
	limit, err := pageLimit(query, defaultPageSize, maxPageSize)
	if err != nil {
		return err
	}
	msgs, next, err := s.node.Messages(q.r.Context(), with, query.Get("before"), limit)
	if err != nil {
		return err
	}
	page := MessagesPage{Messages: nonNil(msgs)}
	if next != "" {
		page.Next = &next
	}
	writeJSON(q.w, http.StatusOK, page)
	return nil
}

func (s *Server) conversations(q *request) error {
	cs, err := s.node.Conversations(q.r.Context())
	if err != nil {
		return err
	}
	writeJSON(q.w, http.StatusOK, ConversationList{Conversations: nonNil(cs)})
	return nil
}

func (s *Server) markRead(q *request) error {
	var req MarkReadRequest
	if _, err := decodeBody(q.w, q.r, &req); err != nil {
		return err
	}
	if req.With == "" {
		return apiError(CodeBadRequest, "with is required")
	}
	if err := s.node.MarkRead(q.r.Context(), req.With, req.UpTo); err != nil {
		return err
	}
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) nodeInfo(q *request) error {
	info, err := s.node.NodeInfo(q.r.Context())
	if err != nil {
		return err
	}
	info.Addrs = nonNil(info.Addrs)
	info.ConnectedPeers = nonNil(info.ConnectedPeers)
	writeJSON(q.w, http.StatusOK, info)
	return nil
}

func (s *Server) connect(q *request) error {
	var req ConnectRequest
	if _, err := decodeBody(q.w, q.r, &req); err != nil {
		return err
	}
	if req.Addr == "" {
		return apiError(CodeBadRequest, "addr is required")
	}
	if err := s.node.Connect(q.r.Context(), req.Addr); err != nil {
		return err
	}
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}

// nonNil turns a nil slice into an empty one, so that JSON shows [] and
// never null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// RouteDoc is what the OpenAPI document says of one route: the generator
// (api/internal/openapigen, make api) reads the route table through
// Routes, so that the table is the one source of the paths.
type RouteDoc struct {
	Method, Pattern      string
	OperationID, Summary string
	// Auth is "bearer" (a token in the Authorization header), "none", or
	// "socket" (the header on the upgrade, or a first message).
	Auth string
	// Query is a struct whose fields tagged query are the query's
	// parameters; Body the request body's type; Answer the type of a
	// success's body (nil: no body). Each may be nil.
	Query, Body, Answer any
	// BodyOptional: the route also takes no body at all.
	BodyOptional bool
	Status       int // of a success
}

// Routes describes the route table.
func Routes() []RouteDoc {
	auth := map[authKind]string{authBearer: "bearer", authNone: "none", authSocket: "socket"}
	var out []RouteDoc
	for _, rt := range (&Server{}).routeTable() {
		out = append(out, RouteDoc{
			Method: rt.method, Pattern: rt.pattern, OperationID: rt.op, Summary: rt.summary,
			Auth: auth[rt.auth], Query: rt.query, Body: rt.in, Answer: rt.out,
			BodyOptional: rt.body == bodyOptional, Status: rt.status,
		})
	}
	return out
}

// pageLimit is the limit query parameter of a paged route: def when
// absent, else a number from 1 to most.
func pageLimit(query url.Values, def, most int) (int, error) {
	v := query.Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > most {
		return 0, apiError(CodeBadRequest, "limit must be a number from 1 to %d", most)
	}
	return n, nil
}
