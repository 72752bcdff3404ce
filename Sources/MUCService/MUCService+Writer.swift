import Foundation
import Logging
import MUC
import Storage
import Synchronization
import XMPPCore
import XMPPXMLParser

// The rooms' writer: durable changes to the store, per room, in order, fenced.
extension MUCService {
    // MARK: - Writer

    /// Writes durable changes until `finishWrites` (run it for the node's lifetime).
    ///
    /// Each room's changes are written in their order, one transaction for what queued
    /// under one fence (up to the adaptive write size); rooms do not depend on each other, and are written side by
    /// side, so that one room's trouble never holds up another. A room's fence that the
    /// store refused drops that room's later changes under it.
    public func runWriter() async {
        await writes.run { room, fence, changes in await self.store(changes, to: room, fence: fence) }
    }

    /// Stores one room's changes. Retries while the store is away or the failure may
    /// pass; a change the store refuses for good is dropped (the others are stored), the
    /// room is re-read from the store so that memory matches it, and `.rejected` makes
    /// the request that made it fail. `.stale`: another node owns the room now, this
    /// one steps down.
    func store(_ changes: [StoredRoomChange], to room: JID, fence: RoomFence) async -> RoomWriter.Outcome {
        switch await attempt(changes, to: room, fence: fence) {
        case .stored: return .stored
        case .stale: return .stale
        case .timedOut:
            // Too much for one write within its deadline: in halves, in order.
            writes.batching.timedOut(changes.count)
            let half = changes.count / 2
            var outcome = RoomWriter.Outcome.stored
            for part in [Array(changes[..<half]), Array(changes[half...])] {
                switch await store(part, to: room, fence: fence) {
                case .stored: continue
                case .stale: return .stale
                case .rejected: outcome = .rejected
                }
            }
            return outcome
        case .rejected(let error):
            guard changes.count > 1 else {
                rejected(changes, in: room, error: error)
                return .rejected
            }
            // Find the changes at fault: one transaction each, the others are kept.
            var outcome = RoomWriter.Outcome.stored
            for change in changes {
                switch await attempt([change], to: room, fence: fence) {
                case .stored, .timedOut: continue  // a single change is retried until stored: never `.timedOut`
                case .stale: return .stale
                case .rejected(let error):
                    rejected([change], in: room, error: error)
                    outcome = .rejected
                }
            }
            return outcome
        }
    }

    enum Attempt {
        case stored, stale
        /// More than one change, not stored within the deadline: to be written in smaller
        /// pieces. (A write the store finishes late is harmless to repeat: every change is
        /// stored by key, history by its stanza-id.)
        case timedOut
        case rejected(PermanentStoreError)
    }

    /// How long one write may take before it is given up (and, if it held more than one
    /// change, written again in halves).
    static let writeDeadline: Duration = .seconds(5)

    func attempt(_ changes: [StoredRoomChange], to room: JID, fence: RoomFence) async -> Attempt {
        var delay: Duration = .milliseconds(50)
        let deadline = Self.writeDeadline
        while true {
            await writeSlots.acquire()
            let outcome: Attempt?
            let started = clock.now()
            do {
                let store = self.store
                try await withDeadline(Double(deadline.components.seconds), clock: clock) {
                    try await store.apply(changes, to: room, fence: fence)
                }
                writes.batching.stored(changes.count, took: clock.now() - started, deadline: deadline)
                outcome = .stored
            } catch is StoreTimeout where changes.count > 1 {
                logger.warning(
                    "storing room changes ran out of time; writing them in smaller pieces",
                    metadata: ["room": "\(room)", "changes": "\(changes.count)"]
                )
                counterState.withLock { $0.timedOutWrites += 1 }
                outcome = .timedOut
            } catch let error as StaleOwnerError {
                logger.warning("stale owner: write refused, no longer serving the room", metadata: ["room": "\(room)", "fence": "\(error.fence)"])
                counterState.withLock { $0.staleWrites += 1 }
                stepDown(room, fence: fence)
                outcome = .stale
            } catch let error as PermanentStoreError {
                outcome = .rejected(error)
            } catch {
                // PostgreSQL away (restarting), a timeout, a deadlock: keep the order, try
                // again (this room only: the others have lanes of their own).
                logger.error("storing a room change failed; retrying", metadata: ["room": "\(room)", "error": "\(String(reflecting: error))"])
                outcome = nil
            }
            writeSlots.release()
            if let outcome { return outcome }
            try? await clock.sleep(delay)
            delay = min(delay * 2, .seconds(2))
        }
    }

    /// A change the store will never take: logged once, counted, dropped, and the room
    /// re-read so that what it holds matches the store.
    func rejected(_ changes: [StoredRoomChange], in room: JID, error: PermanentStoreError) {
        logger.error(
            "the store refused a room change for good; dropped it",
            metadata: ["room": "\(room)", "change": "\(Self.summary(changes))", "error": "\(error.detail)"]
        )
        counterState.withLock { $0.rejectedWrites += 1 }
        Task { await self.reconcile(room) }
    }

    /// What a change was, for the log (not its content, which may be huge).
    static func summary(_ changes: [StoredRoomChange]) -> String {
        changes.map { change in
            switch change {
            case .configuration: "configuration"
            case .occupant(let occupant): "occupant \(occupant.position)"
            case .occupantLeft: "occupant left"
            case .subject: "subject"
            case .affiliation(let jid, let affiliation, _, _):
                "affiliation \(affiliation) (\(jid.description.utf8.count) bytes)"
            case .history: "history"
            case .deleted: "deleted"
            }
        }.joined(separator: ", ")
    }

    /// How many room changes one write takes now (adapted to how long the store takes).
    public var writeBatchLimit: Int { writes.batching.limit }

    /// Stops accepting writes; `runWriter` returns after the queued ones.
    public func finishWrites() {
        writes.finish()
    }

    /// Returns once every change queued before the call is stored (or refused).
    public func flushWrites() async {
        await writes.flush()
    }

    /// Returns once every change of `room` queued before the call is stored (or refused).
    public func flushWrites(_ room: JID) async {
        await writes.flush(room)
    }
}
