import Synchronization

/// Counts the connections that have not authenticated yet, in total and per client
/// address, so that connections which never log in (slow or idle ones) cannot take every
/// file descriptor and buffer of the node. A connection holds its place until it
/// authenticates or closes.
final class ConnectionAdmission: Sendable {
    private struct State {
        var total = 0
        var perAddress: [String: Int] = [:]
    }

    private let state = Mutex(State())

    /// Takes a place for a connection from `address`; returns why it is refused, or nil.
    func admit(_ address: String, options: C2SConfiguration.Options) -> String? {
        state.withLock { state in
            if state.total >= options.maxUnauthenticatedConnections {
                return "too many connections are logging in; try again later"
            }
            let fromAddress = state.perAddress[address, default: 0]
            if fromAddress >= options.maxUnauthenticatedConnectionsPerAddress {
                return "too many connections from your address are logging in"
            }
            state.total += 1
            state.perAddress[address] = fromAddress + 1
            return nil
        }
    }

    func release(_ address: String) {
        state.withLock { state in
            state.total -= 1
            let left = state.perAddress[address, default: 1] - 1
            state.perAddress[address] = left > 0 ? left : nil
        }
    }

    /// Connections holding a place now.
    var unauthenticated: Int { state.withLock { $0.total } }
}
