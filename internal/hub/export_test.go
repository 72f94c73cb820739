package hub

// Idle reports whether this replica delivers queue (a connection joined its delivery) and no
// delivery run of it is going or due.
func (h *Hub) Idle(queue string) bool {
	h.d.mu.Lock()
	defer h.d.mu.Unlock()
	st := h.d.queues[queue]
	return st != nil && len(st.conns) > 0 && !st.running && !st.writing && len(st.handoff) == 0
}
