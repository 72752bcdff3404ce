/// Things that happen to node links and that an operator should be able to count
/// (`conclave_link_events_total{event}`): refused handshakes, limits reached, frames dropped.
public enum LinkEvent: String, CaseIterable, Sendable {
    /// A connecting node's handshake was refused: malformed, a wrong proof of the secret,
    /// a replayed nonce, or an incarnation of this node that is not the current one.
    case refusedConnector = "refused_connector"
    /// The node this one connected to failed to prove the cluster secret (or named
    /// itself wrongly): nothing was sent to it.
    case refusedAcceptor = "refused_acceptor"
    /// A peer's TLS certificate does not name the node it claims to be.
    case refusedCertificateName = "refused_certificate_name"
    /// A connection to the link port was closed at once: too many unauthenticated ones,
    /// in total or from its address.
    case refusedUnauthenticatedLimit = "refused_unauthenticated_limit"
    /// A handshake did not complete within the authentication deadline.
    case authenticationTimeout = "authentication_timeout"
    /// A peer sent more than the pre-authentication byte budget before authenticating.
    case preAuthenticationBytesExceeded = "preauth_bytes_exceeded"
    /// An authenticated peer sent input this node could not parse; the link was dropped
    /// and the peer told which frame to skip.
    case badFrameReceived = "bad_frame_received"
    /// A frame the peer could not parse, even sent alone, was dropped (never resent).
    case poisonFrameDropped = "poison_frame_dropped"
    /// A well-formed element from a peer that is not a known frame was skipped.
    case unknownFrameSkipped = "unknown_frame_skipped"
    /// A frame was refused (bounced) because the peer's queue is at its byte or frame bound.
    case queueFull = "queue_full"
    /// A frame was refused (bounced) because it is larger than the largest frame.
    case frameTooLarge = "frame_too_large"
    /// A run of a peer the membership had declared gone (it was paused past its lease and
    /// resumed) connected or sent a frame: refused, the frame dropped, the connection closed.
    case departedPeerRefused = "departed_peer_refused"
    /// This node lost its lease and has not joined again as a new run yet: a frame a peer
    /// sent meanwhile was not taken (the connection closed); the peer keeps it and routes
    /// it again once it sees this node's run gone.
    case refusedWhileRejoining = "refused_while_rejoining"
}
