package api

import "net/http"

// retryMessage serves POST /api/v1/messages/{msg_id}/retry: a failed
// outgoing message is queued again (202, {"msg_id", "status"}).
func (s *Server) retryMessage(q *request) error {
	m, err := s.node.RetryMessage(q.r.Context(), q.param("msg_id"))
	if err != nil {
		return err
	}
	writeJSON(q.w, http.StatusAccepted, SendMessageResponse{ID: m.ID, Status: m.Status})
	return nil
}

// deleteMessage serves DELETE /api/v1/messages/{msg_id}: the message is
// deleted on this node (204).
func (s *Server) deleteMessage(q *request) error {
	if err := s.node.DeleteMessage(q.r.Context(), q.param("msg_id")); err != nil {
		return err
	}
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}
