package hub

// Idle reports whether this replica delivers queue and no delivery run of it is going or due.
func (h *Hub) Idle(queue string) bool {
	h.d.mu.Lock()
	defer h.d.mu.Unlock()
	st := h.d.queues[queue]
	return st != nil && !st.running && !st.writing && len(st.handoff) == 0
}
