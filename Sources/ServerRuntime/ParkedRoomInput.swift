import MUCService
import Synchronization
import XMPPCore

/// Room input that came over node links while this node's rooms' writer was above its
/// high-water mark: parked, in order, until the writer's backlog falls to its low mark.
///
/// Parked input is not handled, so its frames are not acknowledged, so the sending
/// node's queue to this node grows until it is high there too, and that node stops
/// reading the sessions that send room input here: backpressure from this node's store
/// back to the clients on other nodes. What is parked is bounded by the senders' queues
/// (`cluster.link_queue_bytes` each). Other frames (copies for this node's sessions,
/// acknowledgements) go on meanwhile.
final class ParkedRoomInput: Sendable {
    private struct State {
        var queue: [RoomInput] = []
        var head = 0
        /// A drain is waiting for relief or running: what arrives queues behind it.
        var draining = false
        var parkedSoFar = 0
        /// Bumped by `discardAll`: a drain of what was discarded stops.
        var epoch = 0
    }
    private let state = Mutex(State())

    /// Handles `input` at once, or parks it behind what is parked.
    func handle(_ input: RoomInput, in muc: MUCService) {
        enum Decision { case direct, parked, first(Int) }
        let decision = state.withLock { state -> Decision in
            if !state.draining, !muc.writerBacklog.isHigh { return .direct }
            state.queue.append(input)
            state.parkedSoFar += 1
            if state.draining { return .parked }
            state.draining = true
            return .first(state.epoch)
        }
        switch decision {
        case .direct: muc.handle(input)
        case .parked: break
        case .first(let epoch): muc.writerBacklog.whenRelieved { Task { self.drain(muc, epoch: epoch) } }
        }
    }

    /// The node lost its lease: what is parked belongs to the run the others declared
    /// gone (its senders route it again to the next run), and is dropped unhandled.
    func discardAll() {
        state.withLock { state in
            state.queue = []
            state.head = 0
            state.draining = false
            state.epoch += 1
        }
    }

    /// Input parked now.
    var count: Int { state.withLock { $0.queue.count - $0.head } }
    /// Input parked since the start (a metric).
    var parkedTotal: Int { state.withLock { $0.parkedSoFar } }

    private func drain(_ muc: MUCService, epoch: Int) {
        while true {
            let batch = state.withLock { state -> [RoomInput]? in
                guard state.epoch == epoch else { return nil }
                guard state.head < state.queue.count else {
                    state.queue = []
                    state.head = 0
                    state.draining = false
                    return nil
                }
                let end = min(state.queue.count, state.head + 256)
                let batch = Array(state.queue[state.head..<end])
                state.head = end
                if state.head >= 4096 {
                    state.queue.removeFirst(state.head)
                    state.head = 0
                }
                return batch
            }
            guard let batch else { return }
            for input in batch {
                // Discarded meanwhile (the lease was lost): not one more is handled.
                guard state.withLock({ $0.epoch == epoch }) else { return }
                muc.handle(input)
            }
            if muc.writerBacklog.isHigh {
                // High again: the rest waits for the next relief.
                muc.writerBacklog.whenRelieved { Task { self.drain(muc, epoch: epoch) } }
                return
            }
        }
    }
}
