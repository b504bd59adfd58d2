// Noticing that a client went away while we have nothing to write yet (its request is queued or
// in prefill), so its sequence can be cancelled at once rather than after the first token.
//
// cpp-httplib (0.11) does not give handlers the socket, and its DataSink::is_writable() only asks
// select() whether a write would block, which a closed peer never does. So the handler finds its
// own connection's descriptor: the socket in /proc/self/fd whose local and peer addresses are the
// request's. The connection thread owns that socket for the whole request, so the descriptor
// stays valid while the handler runs.
#pragma once

#include <string>

namespace pensieve::server {

// The descriptor of the TCP connection (local_port, remote_addr:remote_port), or -1.
int find_connection_fd(int local_port, const std::string& remote_addr, int remote_port);

// True when the peer has closed, half-closed or reset the connection (poll, then a non-blocking
// peek that reads end-of-file or an error). Never blocks.
bool peer_closed(int fd);

}  // namespace pensieve::server
