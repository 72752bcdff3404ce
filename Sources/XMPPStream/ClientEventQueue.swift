import NIOCore
import Synchronization
import XMPPCore

/// What a client connection receives, in order.
public enum XMPPClientEvent: Sendable, Hashable {
    case element(XMLElement)
    /// The server opened a stream (its header attributes).
    case streamOpened(XMLElement)
    /// The server closed its stream (`</stream:stream>`).
    case streamClosed
    /// The connection is gone.
    case disconnected
    /// The input was not XML the client could parse.
    case parseError(String)
}

/// An unbounded queue between the connection's event loop and the task reading it.
final class ClientEventQueue: Sendable {
    /// The error that ended the connection (a failed TLS handshake, say), if one did.
    let failure = Mutex<String?>(nil)
    private struct State {
        var buffer: [XMPPClientEvent] = []
        var head = 0
        var waiter: (id: Int, continuation: CheckedContinuation<XMPPClientEvent?, Never>)?
        var nextWaiterID = 0
        var finished = false
    }

    private let state = Mutex(State())

    func push(_ event: XMPPClientEvent) {
        let waiter = state.withLock { state -> CheckedContinuation<XMPPClientEvent?, Never>? in
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter.continuation
            }
            state.buffer.append(event)
            return nil
        }
        waiter?.resume(returning: event)
    }

    /// The next event, or `nil` when none arrives within `timeout`.
    func next(timeout: TimeAmount, on eventLoop: any EventLoop) async -> XMPPClientEvent? {
        await withCheckedContinuation { continuation in
            let id = state.withLock { state -> Int? in
                if state.head < state.buffer.count {
                    let event = state.buffer[state.head]
                    state.head += 1
                    if state.head > 64, state.head * 2 > state.buffer.count {
                        state.buffer.removeFirst(state.head)
                        state.head = 0
                    }
                    continuation.resume(returning: event)
                    return nil
                }
                state.nextWaiterID += 1
                state.waiter = (state.nextWaiterID, continuation)
                return state.nextWaiterID
            }
            guard let id else { return }
            eventLoop.scheduleTask(in: timeout) { [self] in
                let expired = state.withLock { state -> CheckedContinuation<XMPPClientEvent?, Never>? in
                    guard let waiter = state.waiter, waiter.id == id else { return nil }
                    state.waiter = nil
                    return waiter.continuation
                }
                expired?.resume(returning: nil)
            }
        }
    }

    /// Every event already received, without waiting.
    func drain() -> [XMPPClientEvent] {
        state.withLock { state in
            defer {
                state.buffer.removeAll()
                state.head = 0
            }
            return Array(state.buffer[state.head...])
        }
    }
}
